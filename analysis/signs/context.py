"""What every per-level sign needs: canonical images, references, crops."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.results import SpineSegmentation
from analysis.signs.geometry import (
    BoolArray,
    FloatArray,
    Frame,
    canonical_images,
    frame_of,
    inner_distance_mm,
)
from analysis.signs.regions import ReferenceRegions, derive_reference_regions, ordered_bodies
from analysis.thresholds import SignThresholds
from analysis.volume import Sequence, Volume

# Fluid-sensitive sequences, best first: STIR suppresses fat, T2 does not.
FLUID_ORDER: tuple[Sequence, ...] = (Sequence.STIR, Sequence.T2)
MIN_CORE_VOXELS = 20
# Disc height reached beyond a body with no labelled neighbour (lumbar discs are 8-12 mm).
ENDPLATE_REACH_MM = 12.0


@dataclass(frozen=True, eq=False)
class StudyContext:
    frame: Frame
    images: Mapping[Sequence, FloatArray]  # canonical (LR, SI, AP)
    labels: npt.NDArray[np.integer]  # canonical
    discs: Mapping[str, BoolArray]  # canonical
    muscle: Mapping[str, BoolArray]  # canonical, per level ("" = any level)
    order: tuple[tuple[str, int], ...]  # (level, label) top to bottom
    marrow_ref: Mapping[Sequence, float]  # study median of body-core medians
    disc_ref: Mapping[Sequence, float]  # study median of the derived discs' medians
    fluid: Sequence | None
    thresholds: SignThresholds
    regions_source: str
    # canonical: where a sequence has image; a sequence not listed has it everywhere
    footprints: Mapping[Sequence, BoolArray] = field(default_factory=dict)
    seen: BoolArray | None = None  # canonical: where every one of ``images`` has image; None: everywhere
    outside: tuple[Sequence, ...] = ()  # the study's sequences left out of this view: they miss the body

    def has(self, seq: Sequence) -> bool:
        return seq in self.images

    def lacking(self, *seqs: Sequence) -> str:
        """Why none of ``seqs`` is read: the study has none, or those it has do not cover the body."""
        short = [str(seq) for seq in seqs if seq in self.outside]
        if short:
            verb = "does" if len(short) == 1 else "do"
            return f"the sagittal {' and '.join(short)} {verb} not cover the body"
        return f"no sagittal {' or '.join(str(seq) for seq in seqs)}"

    def sees(self, seq: Sequence, where: BoolArray, box: tuple[slice, slice, slice] | None = None) -> bool:
        """Whether ``seq`` has image at every voxel of ``where`` (a mask of ``box``, or of the whole grid)."""
        footprint = self.footprints.get(seq)
        if footprint is None:
            return True
        return bool(footprint[box if box is not None else (slice(None),) * 3][where].all())


def body_view(ctx: StudyContext, label: int) -> StudyContext:
    """The study as one body is seen: only the sequences with image over all of it.

    A series with a smaller field of view than the one the bodies were found on
    is padded outside it; read there, the padding looked like dark T1 marrow or
    like a missing STIR. Where the STIR does not reach a body, the T2 is its
    fluid-sensitive image. When no sequence covers the whole body, all are kept.
    """
    if not ctx.footprints:
        return ctx
    body = ctx.labels == label
    box = bbox(body, 0)
    kept = [seq for seq in ctx.images if ctx.sees(seq, body[box], box)]
    masks = [ctx.footprints[seq] for seq in kept if seq in ctx.footprints]
    if not kept or (len(kept) == len(ctx.images) and all(mask.all() for mask in masks)):
        return ctx
    return replace(
        ctx,
        images={seq: ctx.images[seq] for seq in kept},
        fluid=next((seq for seq in FLUID_ORDER if seq in kept), None),
        footprints={seq: ctx.footprints[seq] for seq in kept if seq in ctx.footprints},
        seen=np.logical_and.reduce(masks) if masks else None,
        outside=tuple(seq for seq in ctx.images if seq not in kept),
    )


@dataclass(frozen=True, eq=False)
class BodyCrop:
    """One body and its surroundings, cut out of the canonical arrays."""

    level: str
    label: int
    slices: tuple[slice, slice, slice]
    body: BoolArray
    other_bodies: BoolArray
    discs: BoolArray  # the discs next to this body (reference tissue)
    all_discs: BoolArray
    muscle: BoolArray | None
    core: BoolArray
    inner_mm: FloatArray
    images: Mapping[Sequence, FloatArray]

    @property
    def centroid(self) -> tuple[float, float, float]:
        idx = np.nonzero(self.body)
        return (float(idx[0].mean()), float(idx[1].mean()), float(idx[2].mean()))


def build_context(
    volumes: Mapping[Sequence, Volume],
    segmentation: SpineSegmentation,
    regions: ReferenceRegions | None,
    thresholds: SignThresholds,
    footprints: Mapping[Sequence, Volume] | None = None,
) -> StudyContext:
    """``footprints``: where each sequence has image on the label grid (a sequence not in it: everywhere)."""
    if not isinstance(segmentation, SpineSegmentation):
        raise TypeError(f"segmentation must be a SpineSegmentation, got {type(segmentation).__name__}")
    if not isinstance(volumes, Mapping) or not volumes:
        raise ValueError("volumes must be a non-empty mapping of Sequence to Volume")
    if not isinstance(thresholds, SignThresholds):
        raise TypeError(f"thresholds must be SignThresholds, got {type(thresholds).__name__}")
    if regions is None:
        regions = derive_reference_regions(segmentation)
    if not isinstance(regions, ReferenceRegions):
        raise TypeError(f"regions must be ReferenceRegions or None, got {type(regions).__name__}")
    used = {Sequence(s): v for s, v in volumes.items() if Sequence(s) in _USED}
    frame = frame_of(segmentation.labels)
    labels = np.asarray(frame.to_canonical(np.asarray(segmentation.labels.array)))
    if not (labels > 0).any():
        raise ValueError("segmentation.labels holds no vertebral body")
    pad = int(np.ceil((thresholds.ste_search_mm + thresholds.canal_search_mm) / min(frame.spacing)))
    images = canonical_images(used, segmentation.labels, frame, bbox(labels > 0, pad))
    seen_by: dict[Sequence, BoolArray] = {}
    for seq, footprint in (footprints or {}).items():
        if not isinstance(footprint, Volume) or not footprint.same_grid(segmentation.labels, atol_mm=1e-2):
            raise ValueError(f"footprints[{seq!r}] must be a Volume on the label map's grid")
        if Sequence(seq) in used:
            seen_by[Sequence(seq)] = np.asarray(frame.to_canonical(np.asarray(footprint.array)), dtype=bool)
    discs = {k: np.asarray(frame.to_canonical(m), dtype=bool) for k, m in regions.discs.items()}
    muscle = {lv: np.asarray(frame.to_canonical(m), dtype=bool) for lv, m in regions.muscle_by_level.items()}
    if regions.muscle is not None:
        muscle[""] = np.asarray(frame.to_canonical(regions.muscle), dtype=bool)
    order = tuple((lev, lab) for lev, lab, _ in ordered_bodies(segmentation, frame))
    cores = []
    for _, lab in order:
        box = bbox(labels == lab, 2)
        body = labels[box] == lab
        core = body_core(body, inner_distance_mm(body, frame.spacing), thresholds.core_margin_mm)
        if core.any():
            cores.append((box, core))
    # the study's references from the bodies and discs each sequence has image over
    marrow_ref: dict[Sequence, float] = {}
    disc_ref: dict[Sequence, float] = {}
    for seq, img in images.items():
        seen = seen_by.get(seq)
        medians = [np.median(img[box][core]) for box, core in cores if seen is None or seen[box][core].all()]
        if medians:
            marrow_ref[seq] = float(np.median(medians))
        medians = [np.median(img[m]) for m in discs.values() if m.any() and (seen is None or seen[m].all())]
        if medians:
            disc_ref[seq] = float(np.median(medians))
    fluid = next((s for s in FLUID_ORDER if s in images), None)
    return StudyContext(frame, images, labels, discs, muscle, order, marrow_ref, disc_ref, fluid,
                        thresholds, regions.source, seen_by)


def endplate_zone(labels: npt.NDArray[np.integer], reach: float,
                  free_sides: Mapping[int, tuple[bool, bool]]) -> BoolArray:
    """Unlabelled voxels within ``reach`` voxels above / below a body, in its own columns.

    ``free_sides`` says, per label, whether the side above / below has no
    derived disc (no labelled neighbour: end of the field of view, a missing
    S1); a disc is still there and must be kept out of lesion growth.
    """
    out = np.zeros(labels.shape, dtype=bool)
    n_si = labels.shape[1]
    si = np.arange(n_si)[None, :, None]
    for lab, (above, below) in free_sides.items():
        body = labels == lab
        if not (above or below) or not body.any():
            continue
        cols = body.any(axis=1)[:, None, :]
        if above:
            top = np.where(body, si, n_si).min(axis=1)[:, None, :]
            out |= cols & (si < top) & (si >= top - reach)
        if below:
            bottom = np.where(body, si, -1).max(axis=1)[:, None, :]
            out |= cols & (si > bottom) & (si <= bottom + reach)
    return out & (labels == 0)


def bbox(mask: BoolArray, pad: int) -> tuple[slice, slice, slice]:
    """Bounding box of a non-empty ``mask``, ``pad`` voxels wider on every side."""
    out = []
    for axis, n in enumerate(mask.shape):
        # projections instead of np.nonzero: no index arrays of every voxel
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(0, int(hit[0]) - pad), min(n, int(hit[-1]) + pad + 1)))
    return (out[0], out[1], out[2])


def body_core(body: BoolArray, inner_mm: FloatArray, margin_mm: float) -> BoolArray:
    """The body without its partial-volume rim: one voxel off every face (the
    thick slices' outermost sagittal slices too) and ``margin_mm`` in-plane."""
    core = ndimage.binary_erosion(body, structure=ndimage.generate_binary_structure(3, 1))
    core &= inner_mm > margin_mm
    return core if core.sum() >= MIN_CORE_VOXELS else body.copy()


_USED = (Sequence.T1, Sequence.T2, Sequence.STIR, Sequence.T1C)


def crop_body(ctx: StudyContext, level: str, label: int) -> BodyCrop | None:
    """The body with a margin wide enough for soft-tissue and canal search."""
    full = ctx.labels == label
    if not full.any():
        return None
    idx = np.nonzero(full)
    pad_mm = ctx.thresholds.ste_search_mm + 3.0
    slices = []
    for axis in range(3):
        pad = int(np.ceil(pad_mm / ctx.frame.spacing[axis]))
        lo = max(0, int(idx[axis].min()) - pad)
        hi = min(full.shape[axis], int(idx[axis].max()) + pad + 1)
        slices.append(slice(lo, hi))
    sl = (slices[0], slices[1], slices[2])
    if ctx.seen is not None and ctx.seen[sl].any():
        # the box ends where a sequence of this body's view stops, as it ends at the grid's edge
        covered = bbox(ctx.seen[sl], 0)
        sl = (slice(sl[0].start + covered[0].start, sl[0].start + covered[0].stop),
              slice(sl[1].start + covered[1].start, sl[1].start + covered[1].stop),
              slice(sl[2].start + covered[2].start, sl[2].start + covered[2].stop))
    body = full[sl]
    lab = ctx.labels[sl]
    other = (lab > 0) & ~body
    near = [m[sl] for k, m in ctx.discs.items() if level in k.split("-")]
    discs = np.logical_or.reduce(near) if near else np.zeros_like(body)
    all_d = [m[sl] for m in ctx.discs.values()]
    all_discs = np.logical_or.reduce(all_d) if all_d else np.zeros_like(body)
    names = [lv for lv, _ in ctx.order]
    free: dict[int, tuple[bool, bool]] = {}
    for i, (lv, lb) in enumerate(ctx.order):
        above = i == 0 or f"{names[i - 1]}-{lv}" not in ctx.discs
        below = i == len(names) - 1 or f"{lv}-{names[i + 1]}" not in ctx.discs
        free[lb] = (above, below)
    all_discs |= endplate_zone(lab, ENDPLATE_REACH_MM / ctx.frame.spacing[1], free)
    # the reference discs leave a voxel next to each endplate out, and a disc
    # bulges a few mm beyond the bodies' front and back: widen them so lesion
    # growth cannot slip along an endplate into disc tissue (which looks alike)
    all_discs = ndimage.binary_dilation(all_discs, structure=np.ones((1, 5, 7), dtype=bool))
    inner = inner_distance_mm(body, ctx.frame.spacing)
    core = body_core(body, inner, ctx.thresholds.core_margin_mm)
    whole = ctx.muscle.get(level, ctx.muscle.get(""))
    muscle = None if whole is None else whole[sl]
    images = {s: img[sl] for s, img in ctx.images.items()}
    return BodyCrop(level, label, sl, body, other, np.asarray(discs, dtype=bool),
                    np.asarray(all_discs, dtype=bool), muscle, core, inner, images)
