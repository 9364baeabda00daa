"""Where a marrow lesion goes beyond the body: cortex, soft tissue, pedicles.

The lesion found in the body defines its own signature (median signal per
sequence). Tissue outside the body that matches that signature and is
connected to the lesion is lesion tissue: a short way out means the dark
cortical rim is broken; further out it is a soft-tissue mass, epidural when it
lies behind the body near the midline; lateral-posterior bone is the pedicle.
Other bodies and the discs are never entered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.results import SignState
from analysis.signs.context import BodyCrop, StudyContext
from analysis.signs.geometry import BoolArray, FloatArray, outer_distance_mm
from analysis.signs.marrow import MarrowResult
from analysis.volume import Sequence


@dataclass(frozen=True, eq=False)
class ExtentResult:
    cortex: SignState
    soft_tissue: SignState
    pedicle: SignState
    locations: tuple[str, ...]
    ste_volume_ml: float | None
    ste_extent_mm: float | None
    epidural_mask: BoolArray  # crop, lesion tissue in the epidural space
    reasons: tuple[str, ...]


def _signature(values: npt.NDArray[np.float64], darker: bool) -> float:
    """Typical signal of the lesion's most abnormal half (darkest on T1, brightest on T2/STIR).

    A grown lesion may take in milder tissue (edema, a subendplate band) whose
    signal would otherwise drag the signature towards normal marrow.
    """
    mid = float(np.median(values))
    half = values[values <= mid] if darker else values[values >= mid]
    return float(np.median(half)) if half.size else mid


def no_extent(marrow: MarrowResult) -> ExtentResult:
    """Nothing beyond the body: no lesion, or one that does not spread."""
    absent, ind = SignState.ABSENT, SignState.INDETERMINATE
    # with no lesion in the body, pedicle marrow is as (in)determinate as the body's
    pedicle = absent if marrow.state != ind else ind
    if marrow.t1_state == ind and marrow.fluid_state == ind:  # no usable sequence at all
        return ExtentResult(ind, ind, ind, (), None, None, np.zeros_like(marrow.lesion), ())
    return ExtentResult(absent, absent, pedicle, (), 0.0, 0.0, np.zeros_like(marrow.lesion), ())


def lesion_signature(
    images: Mapping[Sequence, FloatArray],
    lesion: BoolArray,
    seeds: BoolArray,
    grow_thresholds: Mapping[Sequence, tuple[str, float]],
) -> dict[Sequence, float]:
    """The lesion's typical signal per sequence it was grown on.

    With T1 and a fluid-sensitive sequence it is read where the lesion was
    seeded, in the body's core. Grown out to a mask that overshoots an endplate,
    a lesion takes in disc voxels (dark on T1, bright on STIR, like tumour) that
    pull its STIR signature toward CSF: an epidural L3 lesion of the evaluation
    read 71 on the network's mask and 88 on the truth mask, with the CSF beside
    it at about 60, and its spread was called indeterminate. A single sequence
    seeds at a stricter bar that cuts into the tumour's own signal, so its
    seeds would give only the tumour's extreme tail: there the whole lesion is
    read (on the phantoms, seeds lost pedicles on T1 or T2 alone: 9 and 10 of 10 -> 4).
    """
    seeded = lesion & seeds
    own = seeded if seeded.any() and len(grow_thresholds) > 1 else lesion
    return {
        seq: _signature(images[seq][own], darker=op == "<")
        for seq, (op, _) in grow_thresholds.items()
        if seq in images
    }


def _lesion_like(
    ctx: StudyContext, crop: BodyCrop, marrow: MarrowResult, signature: Mapping[Sequence, float],
    tolerance: float,
) -> tuple[BoolArray, BoolArray]:
    """Voxels matching the lesion's ``signature`` on every sequence: anywhere, and in bone.

    Pedicle roots are thin: on T1 they mix with the bright fat around them, so
    in bone T1 need only be darker than marrow; the fluid signature must hold.
    """
    match = np.ones_like(crop.body)
    match_bone = np.ones_like(crop.body)
    for seq, med in signature.items():
        op, thr = marrow.grow_thresholds[seq]
        img = crop.images[seq]
        beyond = (img < thr) if op == "<" else (img > thr)
        like = np.abs(img - med) <= tolerance * abs(med)
        match &= like & beyond
        match_bone &= beyond & (like if op == ">" or ctx.fluid is None else True)
    return match, match_bone


def _nearer_csf(
    ctx: StudyContext, crop: BodyCrop, signature: Mapping[Sequence, float], csf: Mapping[Sequence, float]
) -> BoolArray:
    """Tissue outside the body whose signal is nearer the study's CSF than the lesion, on every sequence.

    A lesion through the posterior wall meets the thecal sac. Where the CSF is
    dim (STIR) and nearly as dark as tumour on T1, it lies within the
    signature's tolerance. Followed far above or below the body it is caught as
    a column (``_leaks``), but a sac pinched by the discs above and below stays
    within reach: on the development studies (VB1_02+03, truth masks) two S1
    bodies wholly replaced by tumour grew into the sac behind them and were
    called cortex and soft tissue. With T1 and a fluid-sensitive sequence each
    voxel is compared with both signals. A lesion whose own signal is CSF's
    (within ``signature_tolerance_fluid`` on every sequence) cannot be told
    this way and is left to ``_leaks``.
    """
    none = np.zeros_like(crop.body)
    if Sequence.T1 not in crop.images or ctx.fluid is None or not signature:
        return none
    if not all(seq in csf for seq in signature):
        return none
    tol = ctx.thresholds.signature_tolerance_fluid
    if all(abs(signature[q] - csf[q]) <= tol * abs(csf[q]) for q in signature):
        return none
    nearer = ~crop.body
    for seq, med in signature.items():
        img = crop.images[seq]
        nearer &= np.abs(img - csf[seq]) < np.abs(img - med)
    return nearer


def _leaks(ctx: StudyContext, crop: BodyCrop, outside: BoolArray) -> bool:
    """Lesion-like tissue followed far above or below the body: a fluid column, not a mass."""
    th, sp = ctx.thresholds, ctx.frame.spacing
    si_rows = np.nonzero(crop.body.any(axis=(0, 2)))[0]
    reach = round(th.ste_si_beyond_mm / sp[1])
    si_all = np.arange(crop.body.shape[1])[None, :, None]
    far = outside & ((si_all < si_rows.min() - reach) | (si_all > si_rows.max() + reach))
    return float(far.sum()) * ctx.frame.voxel_mm3 >= th.ste_min_mm3


def assess_extent(
    ctx: StudyContext, crop: BodyCrop, marrow: MarrowResult, csf: Mapping[Sequence, float]
) -> ExtentResult:
    """Cortex, soft tissue and pedicles for ``marrow``'s lesion; ``csf`` is the study's CSF signal."""
    th = ctx.thresholds
    if not marrow.lesion.any():
        return no_extent(marrow)

    sp = ctx.frame.spacing
    out_mm = outer_distance_mm(crop.body, sp)
    allowed = (out_mm <= th.ste_search_mm) & ~crop.other_bodies & ~crop.all_discs
    # Tissue reached far above or below the body is a fluid column the lesion's
    # signal happens to match (CSF on some STIR scans), not a mass. The
    # signature is narrowed once (tumour and CSF differ, if less than either
    # differs from marrow); if the column is still reached, the spread of this
    # lesion cannot be told.
    signature = lesion_signature(crop.images, marrow.lesion, marrow.seeds, marrow.grow_thresholds)
    csf_like = _nearer_csf(ctx, crop, signature, csf)
    for tolerance in (th.signature_tolerance, th.signature_tolerance_fluid):
        match, match_bone = _lesion_like(ctx, crop, marrow, signature, tolerance)
        match &= ~csf_like
        grown = ndimage.binary_propagation(marrow.lesion, mask=marrow.lesion | (match & allowed),
                                           structure=np.ones((3, 3, 3), bool))
        outside = grown & ~crop.body
        leak = _leaks(ctx, crop, outside)
        if not leak:
            break

    c_lr, _, _c_ap = crop.centroid
    lr = (np.arange(crop.body.shape[0])[:, None, None] - c_lr) * sp[0]
    si_idx = np.nonzero(crop.body.any(axis=(0, 2)))[0]
    si = np.arange(crop.body.shape[1])[None, :, None]
    ap_post = np.nonzero(crop.body.any(axis=(0, 1)))[0].max()
    posterior = np.arange(crop.body.shape[2])[None, None, :] > ap_post - 0.25 * (
        ap_post - np.nonzero(crop.body.any(axis=(0, 1)))[0].min())
    within_si = (si >= si_idx.min()) & (si <= si_idx.max())
    # the pedicles leave the body within its width: tissue in the sagittal slices past the
    # body's side is a mass beside it, not a pedicle
    within_lr = np.asarray(crop.body.any(axis=(1, 2)))[:, None, None]
    pedicle_region = (posterior & within_si & within_lr & (np.abs(lr) >= th.pedicle_lateral_min_mm)
                      & (out_mm > 0) & (out_mm <= th.pedicle_depth_mm))
    epidural_region = posterior & (np.abs(lr) < th.epidural_half_width_mm) & ~pedicle_region

    voxel = ctx.frame.voxel_mm3
    bone = ndimage.binary_propagation(
        marrow.lesion, mask=marrow.lesion | (match_bone & allowed & (pedicle_region | crop.body)),
        structure=np.ones((3, 3, 3), bool))
    ped_mm3 = float((bone & pedicle_region).sum()) * voxel
    pedicle = SignState.PRESENT if ped_mm3 >= th.pedicle_min_mm3 else SignState.ABSENT

    soft = outside & ~pedicle_region
    broken = float((soft & (out_mm >= th.cortex_break_depth_mm)).sum()) * voxel
    cortex = SignState.PRESENT if broken >= th.cortex_break_mm3 else SignState.ABSENT

    deep = soft & (out_mm >= th.ste_min_depth_mm)
    soft_mm3 = float(soft.sum()) * voxel
    ste_present = deep.any() and soft_mm3 >= th.ste_min_mm3
    locations: list[str] = []
    epidural = soft & epidural_region
    if ste_present and ctx.fluid is not None:
        if (deep & epidural_region).any():
            locations.append("epidural")
        if (deep & ~epidural_region).any():
            locations.append("paravertebral")
    extent = float(out_mm[soft].max()) if soft.any() else 0.0
    reasons: list[str] = []
    if ctx.fluid is None:
        # on T1 alone lesion tissue looks like disc, muscle and CSF: its spread
        # outside the body cannot be told
        cortex = ste = SignState.INDETERMINATE
        reasons.append(f"{crop.level}: {ctx.lacking(Sequence.T2, Sequence.STIR)}: cortex and soft-tissue "
                       "extent of the "
                       "marrow lesion cannot be told from neighbouring tissue")
    elif leak:
        cortex = ste = SignState.INDETERMINATE
        locations = []
        reasons.append(f"{crop.level}: the lesion's signal matches a fluid column along the spine "
                       "(CSF): cortex and soft-tissue extension cannot be told")
    else:
        ste = SignState.PRESENT if ste_present else SignState.ABSENT
    known = ste != SignState.INDETERMINATE
    return ExtentResult(
        cortex=cortex,
        soft_tissue=ste,
        pedicle=pedicle,
        locations=tuple(locations),
        ste_volume_ml=(soft_mm3 / 1000.0 if ste_present else 0.0) if known else None,
        ste_extent_mm=(extent if ste_present else 0.0) if known else None,
        epidural_mask=epidural if ste == SignState.PRESENT else np.zeros_like(crop.body),
        reasons=tuple(reasons),
    )
