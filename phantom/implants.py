"""Implant MRI signs of spinal malignancy and compression fractures into volumes.

Pure numpy; works on the phantom and on real (rescaled uint8) volumes alike,
because every implanted signal is a multiple of tissue measured in the same
image (the body's own marrow, its adjacent discs).

API (stable)::

    result = implant(images, labels, spacing_kji, spec, rng)

- ``images``: ``Mapping[Sequence, ndarray]``, 3-D arrays ``[k, j, i]`` on one
  sagittal grid: ``k`` left-right, ``j`` superior->inferior, ``i``
  anterior->posterior (Image Orientation ``0\\1\\0\\0\\0\\-1``, as the shared
  data and the phantom). Any dtype; the output keeps it.
- ``labels``: integer vertebral-body label map on the same grid (VerSe
  T12=19, L1..L5=20..24, S1=26, or any positive labels).
- ``spacing_kji``: voxel size in mm along ``(k, j, i)``.
- ``spec``: ``ImplantSpec(lesions=(LesionSpec, ...), fractures=(FractureSpec, ...))``
  (types in ``phantom.specs``, re-exported here); each names its body by
  label (``LEVEL_LABELS["L3"]`` -> 22). Fractures are applied first, then
  lesions; several lesions per level are allowed, one fracture per level.

  * ``LesionSpec(label, kind=FOCAL|DIFFUSE, extension=NONE|PARAVERTEBRAL|
    EPIDURAL, radius_mm=None, extension_mm=None, pedicles=False,
    enhancing=True, conspicuity=1.0, lateral=False)``: an extension breaks the
    anterior (paravertebral; with ``lateral`` the side wall instead) or
    posterior (epidural, narrows the canal) cortex and grows out of the body.
  * ``FractureSpec(label, grade=1|2|3, shape=WEDGE|BICONCAVE|CRUSH,
    pattern=BENIGN|MALIGNANT, fluid_sign=False, retropulsion_mm=None)``:
    benign keeps marrow, adds a band-like line under the collapsed endplate
    and (default 3 mm) a retropulsed posterosuperior fragment; malignant
    replaces all marrow, bows the posterior wall and involves the pedicles.
- ``rng``: ``numpy.random.Generator``; same seed, same result.

:class:`ImplantResult` holds the new ``images`` (same keys, dtypes), the new
``labels`` (fractures change body shape), ``lesion_mask`` (int32, 1..n per
lesion, 0 elsewhere; includes the soft-tissue part outside the body),
``lesions`` (one :class:`LesionTruth` per id), per-label ``levels``
(:class:`LevelTruth`, field names as in ``findings.json``) and ``study``
(:class:`StudyTruth`). ``truth_dict()`` gives the JSON form of truth.json.

Signals: tumour is darker than disc on T1 (0.65 x min(disc, marrow)), bright
against the body's own marrow on STIR (4x, at least the disc) and T2 (1.6x), enhancing
(near marrow) on post-contrast T1. Canal compromise is "present" when any
lesion grows into the epidural space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis.volume import LABEL_LEVELS as _NAMES
from analysis.volume import LEVEL_LABELS, Sequence
from phantom import _lesions as shapes
from phantom._bodyframe import (
    LossProfile,
    Profile,
    body_frame,
    collapse,
    mid_slice,
    profile,
    retropulse,
    smooth_field,
)
from phantom._signal import Reference, Tissue, as_dtype, paint, references, target
from phantom.specs import (
    ABSENT,
    GRADE_LOSS,
    PRESENT,
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantResult,
    ImplantSpec,
    LesionKind,
    LesionSpec,
    LesionTruth,
    LevelTruth,
    StudyTruth,
    genant_grade,
)

__all__ = [
    "LEVEL_LABELS",
    "Extension",
    "FracturePattern",
    "FractureShape",
    "FractureSpec",
    "ImplantResult",
    "ImplantSpec",
    "LesionKind",
    "LesionSpec",
    "LesionTruth",
    "LevelTruth",
    "StudyTruth",
    "genant_grade",
    "implant",
]

FloatArray = npt.NDArray[np.float64]


@dataclass
class _LevelState:
    marrow: bool = False
    cortex: bool = False
    extension: bool = False
    epidural: bool = False
    pedicles: bool = False
    pathologic: bool = False
    loss_pct: float = 0.0
    lesion_ids: list[int] = field(default_factory=list)


@dataclass
class _Work:
    images: dict[Sequence, FloatArray]
    labels: np.ndarray
    lesion_mask: npt.NDArray[np.int32]
    spacing: tuple[float, float, float]
    refs: dict[Sequence, dict[int, Reference]]
    rng: np.random.Generator
    state: dict[int, _LevelState]
    lesions: list[LesionTruth] = field(default_factory=list)


def implant(
    images: Mapping[Sequence, np.ndarray],
    labels: np.ndarray,
    spacing_kji: tuple[float, float, float] | npt.ArrayLike,
    spec: ImplantSpec,
    rng: np.random.Generator,
) -> ImplantResult:
    """Implant ``spec`` into ``images``; see the module docstring."""
    work = _validate(images, labels, spacing_kji, spec, rng)
    for fx in spec.fractures:
        _fracture(work, fx)
    for les in spec.lesions:
        _lesion(work, les)
    return _result(work, images)


def _validate(
    images: Mapping[Sequence, np.ndarray],
    labels: np.ndarray,
    spacing_kji: Any,
    spec: ImplantSpec,
    rng: np.random.Generator,
) -> _Work:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    if not isinstance(spec, ImplantSpec):
        raise TypeError(f"spec must be an ImplantSpec, got {type(spec).__name__}")
    if not isinstance(labels, np.ndarray) or labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 3-D integer numpy array")
    if not images:
        raise ValueError("images must hold at least one sequence")
    for seq, im in images.items():
        if not isinstance(im, np.ndarray) or im.shape != labels.shape:
            raise ValueError(f"images[{seq}] must be an array of the labels' shape {labels.shape}")
    spacing = np.asarray(spacing_kji, dtype=float).ravel()
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_kji must be 3 positive numbers, got {spacing_kji!r}")
    present = {int(v) for v in np.unique(labels) if v > 0}
    touched = {les.label for les in spec.lesions} | {fx.label for fx in spec.fractures}
    if touched - present:
        raise ValueError(
            f"spec names labels {sorted(touched - present)}, absent from labels {sorted(present)}"
        )
    floats = {Sequence(seq): np.asarray(im, dtype=np.float64).copy() for seq, im in images.items()}
    refs = {seq: {lb: references(im, labels, lb) for lb in touched} for seq, im in floats.items()}
    return _Work(
        images=floats,
        labels=labels.copy(),
        lesion_mask=np.zeros(labels.shape, dtype=np.int32),
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        refs=refs,
        rng=rng,
        state={lb: _LevelState() for lb in present},
    )


_Collapsed = tuple[list[FloatArray], npt.NDArray[np.integer], Profile]  # images, labels, profile


def _loss_profile(shape: FractureShape, h: float) -> LossProfile:
    if shape == FractureShape.WEDGE:
        return lambda u, v: h * np.clip((0.85 - u) / 0.7, 0.0, 1.0)
    if shape == FractureShape.BICONCAVE:
        return lambda u, v: h * np.clip(1.0 - ((u - 0.5) / 0.35) ** 2, 0.0, 1.0) * (1.0 - 0.5 * v**2)
    return lambda u, v: np.full(np.shape(u), h)


def _fracture(work: _Work, fx: FractureSpec) -> None:
    frame = body_frame(work.labels, fx.label, work.spacing)
    crop = frame.crop
    seqs = list(work.images)
    crop_ims = [work.images[q][crop] for q in seqs]
    crop_lab = work.labels[crop]
    mid = mid_slice(frame, crop_lab)
    before = profile(frame, crop_lab).heights_mm(mid)
    lo, hi = GRADE_LOSS[fx.grade]
    goal = float(work.rng.uniform(lo, hi))
    top_share = 0.5 if fx.shape == FractureShape.BICONCAVE else 0.8
    # Heights are measured on the voxel grid, so search the collapse whose loss lands in the drawn band:
    # stopping at the grade's boundary would leave implants a fraction of a point from the grade below.
    # A coarse grid may allow no loss in the band (nor in the grade): the nearest is kept, and the
    # truth records the loss and grade it has.
    h, h_lo, h_hi = goal, 0.0, 0.9
    best: tuple[tuple[bool, float], float, _Collapsed] | None = None  # (grade wrong, off goal), loss
    for _ in range(12):
        collapsed = collapse(frame, crop_ims, crop_lab, _loss_profile(fx.shape, h), top_share)
        after = collapsed[2].heights_mm(mid_slice(frame, collapsed[1]))
        loss_pct = 100.0 * max(1.0 - a / b for a, b in zip(after, before, strict=True) if b > 0)
        off = (genant_grade(loss_pct) != fx.grade, abs(loss_pct - 100.0 * goal))
        if best is None or off < best[0]:
            best = (off, loss_pct, collapsed)
        if 100 * lo <= loss_pct <= 100 * hi:
            break
        h_lo, h_hi = (h, h_hi) if loss_pct < 100 * goal else (h_lo, h)
        guess = h * goal * 100.0 / max(loss_pct, 1.0)
        h = guess if h_lo < guess < h_hi else 0.5 * (h_lo + h_hi)
    assert best is not None
    _, loss_pct, (new_ims, new_lab, prof) = best
    work.state[fx.label].loss_pct = loss_pct
    local = frame.local()
    body = new_lab == fx.label
    if fx.pattern == FracturePattern.BENIGN:
        biconcave = fx.shape == FractureShape.BICONCAVE
        band = shapes.endplate_band(body, local, prof, (2.0, 4.5), True, biconcave, frame, work.rng)
        fluid = (
            shapes.endplate_band(
                body, local, prof, (0.6, 2.2), True, biconcave, frame, work.rng, (0.25, 0.75)
            )
            & (np.abs(local[0]) <= 0.6 * shapes.body_extent(body, local)[0])
            if fx.fluid_sign
            else np.zeros_like(body)
        )
        for q, im in zip(seqs, new_ims, strict=True):
            ref = work.refs[q][fx.label]
            paint(im, band & ~fluid, body, target(Tissue.EDEMA_BAND, q, ref), ref, work.rng)
            paint(im, fluid, np.zeros_like(body), target(Tissue.FLUID, q, ref), ref, work.rng)
        retro = 3.0 if fx.retropulsion_mm is None else fx.retropulsion_mm
        if retro > 0:
            new_ims, new_lab = retropulse(frame, new_ims, new_lab, prof, local, retro)
    else:
        free = new_lab == 0
        bulge = shapes.convex_bulge(body, free, local, float(work.rng.uniform(2.5, 4.0)))
        new_lab = np.where(bulge, fx.label, new_lab).astype(new_lab.dtype)
        rim = shapes.rim_of(new_lab == fx.label) & bulge
        ring = shapes.rim_of(body)
        for im in new_ims:
            im[rim] = float(np.median(im[ring])) if ring.any() else im[rim]
        work.state[fx.label].pathologic = True
    for q, im in zip(seqs, new_ims, strict=True):
        work.images[q][crop] = im
    work.labels[crop] = new_lab
    if fx.pattern == FracturePattern.MALIGNANT:
        _lesion(work, LesionSpec(fx.label, LesionKind.DIFFUSE, pedicles=True))


def _lesion(work: _Work, les: LesionSpec) -> None:
    frame = body_frame(work.labels, les.label, work.spacing, les.lateral)
    crop = frame.crop
    lab = work.labels[crop]
    body = lab == les.label
    free = lab == 0
    local = frame.local()
    st = work.state[les.label]
    outside = np.zeros_like(body)
    breakout = np.zeros_like(body)
    if les.extension != Extension.NONE:
        wall = "side" if les.lateral else "posterior" if les.extension == Extension.EPIDURAL else "anterior"
        breakout, outside = shapes.breakout(
            body, free, frame, local, wall, les.radius_mm, les.extension_mm, work.rng
        )
    if les.kind == LesionKind.DIFFUSE:
        inside = body | breakout
    elif les.extension == Extension.NONE:
        inside = shapes.focal(body, frame, local, les.radius_mm, work.rng)
    else:
        inside = breakout
    if les.pedicles:
        outside = outside | shapes.pedicles(body, free, frame, local, profile(frame, lab))
        st.pedicles = True
    st.marrow = True
    if les.extension != Extension.NONE and outside.any():
        st.cortex = st.extension = True
        st.epidural |= les.extension == Extension.EPIDURAL
    hetero = 0.08 * smooth_field(body.shape, tuple(3.0 / sp for sp in frame.spacing), work.rng)
    core = shapes.ndimage.binary_erosion(body, iterations=1)
    # Where the lesion reaches the rim the cortex is destroyed: no scaled texture there.
    if les.kind == LesionKind.DIFFUSE:
        interior = body.copy()
    elif les.extension == Extension.NONE:
        interior = core
    else:
        interior = core & ~shapes.rim_of(inside | body)
    for q, im in work.images.items():
        ref = work.refs[q].get(les.label) or references(im, work.labels, les.label)
        patch = im[crop]
        paint(
            patch,
            inside | outside,
            interior & inside,
            _faded(target(Tissue.TUMOUR, q, ref, les.enhancing), ref.marrow, les.conspicuity),
            ref,
            work.rng,
            hetero,
        )
        im[crop] = patch
    lesion_id = len(work.lesions) + 1
    sub = work.lesion_mask[crop]
    sub[inside | outside] = lesion_id
    st.lesion_ids.append(lesion_id)
    work.lesions.append(
        LesionTruth(
            lesion_id,
            les.label,
            _NAMES.get(les.label, str(les.label)),
            les.kind.value,
            les.extension.value,
            int((inside | outside).sum()),
        )
    )


def _result(work: _Work, originals: Mapping[Sequence, np.ndarray]) -> ImplantResult:
    images = {q: as_dtype(im, originals[q].dtype) for q, im in work.images.items()}
    levels = []
    for lb in sorted(work.state):
        st = work.state[lb]
        body = work.labels == lb
        frac = 100.0 * float(((work.lesion_mask > 0) & body).sum()) / max(int(body.sum()), 1)
        grade = genant_grade(st.loss_pct)
        susp = st.marrow or st.cortex or st.extension or st.pathologic
        levels.append(
            LevelTruth(
                label=lb,
                level=_NAMES.get(lb, str(lb)),
                marrow_infiltration=_ps(st.marrow),
                cortical_destruction=_ps(st.cortex),
                soft_tissue_extension=_ps(st.extension),
                compression_fracture=_ps(grade >= 1),
                pathologic_fracture_pattern=_ps(st.pathologic and grade >= 1),
                suspicious_for_malignancy=_ps(susp),
                genant_grade=grade,
                height_loss_pct=round(st.loss_pct, 1),
                lesion_fraction_pct=round(frac, 1),
                pedicle_involvement=_ps(st.pedicles),
                canal_compromise=_ps(st.epidural),
            )
        )
    n_susp = sum(lv.suspicious_for_malignancy == PRESENT for lv in levels)
    study = StudyTruth(
        suspicious_for_malignancy=_ps(n_susp > 0),
        suspicious_level_count=n_susp,
        multiple_lesions=_ps(n_susp >= 2),
        canal_compromise=_ps(any(st.epidural for st in work.state.values())),
    )
    return ImplantResult(images, work.labels, work.lesion_mask, tuple(work.lesions), tuple(levels), study)


def _ps(flag: bool) -> str:
    return PRESENT if flag else ABSENT


def _faded(full: float, marrow: float, conspicuity: float) -> float:
    """The tumour's signal ``conspicuity`` of the way from the marrow's (1: exactly ``full``)."""
    return full if conspicuity == 1.0 else marrow + conspicuity * (full - marrow)
