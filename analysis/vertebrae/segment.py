"""From class probabilities to one mask per vertebral body, ordered along the spine.

The column of bodies and its disc cuts are located first (``axis``); each
body is the thresholded map between two consecutive disc cuts, so a thin
bridge of false "body" over a narrow disc cannot merge two bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.morphology import convex_hull_image
from skimage.segmentation import watershed

from analysis.vertebrae.axis import (
    BODY_HALF_DEPTH_MM,
    BODY_THRESHOLD,
    SpineAxis,
    below_cut_mm,
    disc_cuts,
    off_axis_mm,
    plane_grid_mm,
    spine_axis,
)
from analysis.vertebrae.features import FloatArray, resample_2d

BoolArray = npt.NDArray[np.bool_]

_MIN_BODY_ML = 2.0
_CORE_HALF_MM = 4.5
_FOOTPRINT_GROW_MM = 3.0
_MIN_SECTION_FRACTION = 0.25
_MAX_HALF_WIDTH_MM = 27.0
_SEED_CLEARANCE_MM = 5.0
_OPENING_MM = 2.0
_SEED_HALF_DEPTH_MM = 7.0
_MAX_CENTRE_OFF_AXIS_MM = 12.0
_CORE_ERODE_MM = 2.5
_MIN_CORE_ML = 3.0
_NOTCH_PROB = 0.3
# a slice beyond the mask joins the outline while this share of the footprint inside it has
# body probability (design: a body's section shrinks toward its side, not by half a slice)
_LATERAL_SHARE = 0.5


@dataclass(frozen=True)
class BodyCandidate:
    """One body on the canonical grid (LR, SI, AP)."""

    mask: BoolArray
    centroid_mm: tuple[float, float, float]  # canonical axes, mm from voxel 0
    volume_ml: float
    l5_score: float  # mean L5 probability over the body, relative to its body probability
    mean_prob: float
    outline: BoolArray | None = None  # the mask with the notches a lesion cut given back


def probabilities_to_native(work_probs: FloatArray, shape: tuple[int, int, int]) -> FloatArray:
    """Work-grid class probabilities back onto the canonical native grid (LR, SI, AP, C)."""
    lr, si, ap = shape
    if work_probs.shape[0] != lr:
        raise ValueError(f"work_probs has {work_probs.shape[0]} slices, expected {lr}")
    out = np.empty((lr, si, ap, work_probs.shape[-1]), dtype=np.float32)
    for s in range(lr):
        for c in range(work_probs.shape[-1]):
            out[s, :, :, c] = resample_2d(work_probs[s, :, :, c], (si, ap))
    return out


def largest_component(mask: BoolArray) -> BoolArray:
    pieces, npieces = ndimage.label(mask)
    if npieces <= 1:
        return mask
    sizes = ndimage.sum(mask, pieces, range(1, npieces + 1))
    return np.asarray(pieces == int(np.argmax(sizes)) + 1)


def trim_body(region: BoolArray, spacing: tuple[float, float, float]) -> BoolArray:
    """Cut a body's mask back to a vertebral body's shape in the lateral slices.

    A body is a short cylinder: its parasagittal sections lie inside the
    mid-sagittal section (slightly grown) and shrink toward its sides. Lateral
    slices where the network strays into psoas or pedicles are cut off where
    the section falls under a quarter of the central one or beyond
    ``_MAX_HALF_WIDTH_MM``.
    """
    if not region.any():
        return region
    area = region.sum(axis=(1, 2)).astype(float)
    centre = float((np.arange(area.size) * area**2).sum() / (area**2).sum())
    offsets_mm = np.abs(np.arange(area.size) - centre) * spacing[0]
    central = offsets_mm <= max(_CORE_HALF_MM, spacing[0] * 0.6)
    core = region[central].any(axis=0)
    grow = disk((_FOOTPRINT_GROW_MM / spacing[1], _FOOTPRINT_GROW_MM / spacing[2]))[0]
    footprint = ndimage.binary_dilation(core, structure=grow)
    out = region & footprint[None, :, :]
    area = out.sum(axis=(1, 2)).astype(float)
    ref = float(area[central].max()) if central.any() else float(area.max())
    c = round(centre)
    keep = np.zeros(area.size, dtype=bool)
    for step in (1, -1):
        k = c
        while (
            0 <= k < area.size
            and area[k] >= _MIN_SECTION_FRACTION * ref
            and offsets_mm[k] <= _MAX_HALF_WIDTH_MM
        ):
            keep[k] = True
            k += step
    out[~keep] = False
    # strands under 4 mm wide (a ligament or vessel over a disc) are not body
    return open_largest(out, disk((_OPENING_MM / spacing[1], _OPENING_MM / spacing[2])))


def open_largest(mask: BoolArray, structure: BoolArray) -> BoolArray:
    """The largest component of ``mask`` opened by ``structure``, computed on its bounding box.

    Not on the whole volume (that took a tenth of an analysis): an opening
    stays inside the set it opens and a component inside its box, so the
    result is the same voxel for voxel.
    """
    if not mask.any():
        return mask
    box = _bounding_box(mask, tuple(s // 2 + 1 for s in structure.shape))
    out = np.zeros_like(mask)
    opened = ndimage.binary_opening(mask[box], structure=structure)
    out[box] = largest_component(opened) if opened.any() else opened
    return out


def _bounding_box(mask: BoolArray, margin: tuple[int, ...]) -> tuple[slice, ...]:
    """The slices of ``mask``'s true voxels grown by ``margin`` per axis (clipped to the array)."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    grown = zip(box, margin, mask.shape, strict=True)
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in grown)


def disk(radius_px: tuple[float, float]) -> BoolArray:
    ry, rx = max(radius_px[0], 0.5), max(radius_px[1], 0.5)
    y, x = np.ogrid[-int(ry) : int(ry) + 1, -int(rx) : int(rx) + 1]
    return np.asarray((y / ry) ** 2 + (x / rx) ** 2 <= 1.0)[None, :, :]


def split_bodies(
    body_prob: FloatArray, l5_prob: FloatArray, spacing: tuple[float, float, float]
) -> list[BodyCandidate]:
    """Bodies, top to bottom, from body and L5 probabilities on the canonical grid."""
    if body_prob.shape != l5_prob.shape or body_prob.ndim != 3:
        raise ValueError("body_prob and l5_prob must be 3-D arrays of the same shape")
    body_prob = np.asarray(body_prob, dtype=np.float32)
    l5_prob = np.asarray(l5_prob, dtype=np.float32)
    axis = spine_axis(body_prob, spacing)
    if axis is None:
        return []
    cuts, _, _ = disc_cuts(body_prob, axis, spacing)
    mask = body_prob >= BODY_THRESHOLD
    # hole-free per slice: a marrow lesion must not punch a hole in the body
    mask = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    si_mm, ap_mm = plane_grid_mm(mask.shape, spacing)
    # distance from the axis and which segment between disc cuts each in-plane pixel lies in
    off_axis = off_axis_mm(axis, si_mm, ap_mm)
    segment = np.zeros(mask.shape[1:], dtype=np.int32)
    to_cut = np.full(mask.shape[1:], np.inf)
    for c in cuts:
        signed = below_cut_mm(axis, c, si_mm, ap_mm)
        segment += (signed > 0).astype(np.int32)
        to_cut = np.minimum(to_cut, np.abs(signed))
    near = off_axis <= BODY_HALF_DEPTH_MM + 10.0
    mask &= near[None, :, :]
    if not mask.any():
        return []
    # seeds away from the disc cuts; the watershed then follows the real disc, which is
    # wedged and tilted more than a straight cut perpendicular to the axis (L5-S1)
    seeds_2d = (to_cut >= _SEED_CLEARANCE_MM) & (off_axis <= _SEED_HALF_DEPTH_MM)
    seeds = np.where(mask & seeds_2d[None, :, :], segment[None, :, :] + 1, 0)
    seeds = split_seeds_by_cores(seeds, mask & (off_axis <= BODY_HALF_DEPTH_MM)[None], spacing)
    box = ndimage.find_objects(mask.astype(np.int8))[0]
    regions = np.zeros(mask.shape, dtype=np.int32)
    regions[box] = watershed(-body_prob[box], markers=seeds[box], mask=mask[box])
    out: list[BodyCandidate] = []
    region_of: dict[int, int] = {}
    for k in np.unique(regions[regions > 0]):
        region = trim_body(largest_component(regions == k), spacing)
        cand = make_candidate(region, body_prob, l5_prob, None, spacing)
        if cand is not None:
            out.append(cand)
            region_of[id(cand)] = int(k)
    # the outline (lesion notches given back) only for the bodies the chain keeps
    return [
        replace(c, outline=fill_notches(c.mask, body_prob, (regions > 0) & (regions != region_of[id(c)])))
        for c in chain_filter(out, axis)
    ]


def make_candidate(
    region: BoolArray,
    body_prob: FloatArray,
    l5_prob: FloatArray,
    taken: BoolArray | None,
    spacing: tuple[float, float, float],
) -> BodyCandidate | None:
    """A body candidate from its mask, or None when it is too small to be a body.

    ``taken``: voxels of other bodies, which its outline must not take back; with
    None the candidate has no outline yet.
    """
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    count = int(region.sum())
    if count * voxel_ml < _MIN_BODY_ML:
        return None
    idx = np.nonzero(region)
    centroid = tuple(float(i.mean() * sp) for i, sp in zip(idx, spacing, strict=True))
    bp = float(body_prob[region].mean())
    return BodyCandidate(
        mask=region,
        centroid_mm=(centroid[0], centroid[1], centroid[2]),
        volume_ml=count * voxel_ml,
        l5_score=float(l5_prob[region].mean()) / max(bp, 1e-6),
        mean_prob=bp,
        outline=None if taken is None else fill_notches(region, body_prob, taken),
    )


def fill_notches(region: BoolArray, body_prob: FloatArray, taken: BoolArray) -> BoolArray:
    """Give a body back the notch a lesion cut into its outline.

    Marrow replaced by tumour looks like no training body, so the network's
    probability drops there (0.3-0.6) and the thresholded body has a bite out of
    its wall, often just where the lesion breaks out. In each sagittal slice the
    body's convex outline takes back such pixels that still have some body
    probability; disc and soft tissue around a body stay near zero. Only the
    signs use the outline: in a collapsed body it also takes back part of the
    collapse (the evaluation phantoms' Genant grades fell from 7/9 to 4/9 when
    heights were measured on it).
    """
    out = region.copy()
    if not region.any():
        return out
    # the hull lies inside the body's bounding box: work there, not on whole slices
    _, box_si, box_ap = ndimage.find_objects(region.astype(np.int8))[0]
    filled = np.nonzero(region.any(axis=(1, 2)))[0]
    for s in filled:
        hull = convex_hull_image(region[s, box_si, box_ap])
        out[s, box_si, box_ap] |= (
            hull & (body_prob[s, box_si, box_ap] >= _NOTCH_PROB) & ~taken[s, box_si, box_ap]
        )
    # A lesion that replaces the side of the body leaves whole sagittal slices beyond the
    # mask's last one at a middling probability (0.4-0.6, under the body threshold): the
    # development real pair lost 3-4 of 30 lateral lesions so. Those slices are taken back
    # within the footprint of the slice inside them, for as long as they keep a fair share of it.
    for edge, step in ((int(filled[0]), -1), (int(filled[-1]), 1)):
        foot = convex_hull_image(out[edge, box_si, box_ap])
        k = edge + step
        while 0 <= k < out.shape[0] and foot.any():
            add = foot & (body_prob[k, box_si, box_ap] >= _NOTCH_PROB) & ~taken[k, box_si, box_ap]
            if add.sum() < _LATERAL_SHARE * foot.sum():
                break
            out[k, box_si, box_ap] |= add
            foot = add
            k += step
    return out


def split_seeds_by_cores(
    seeds: npt.NDArray[np.int32], mask: BoolArray, spacing: tuple[float, float, float]
) -> npt.NDArray[np.int32]:
    """Give each body core its own seed where one segment between disc cuts holds two.

    The cores are the mask eroded in-plane (the discs between bodies widen into
    gaps); a disc the profile along the axis missed (the last one above the
    sacrum, tilted across the axis's end) still separates two cores. A core
    holding seeds of several segments is left to the cuts (a bridge the erosion
    did not break).
    """
    erode = disk((_CORE_ERODE_MM / spacing[1], _CORE_ERODE_MM / spacing[2]))
    cores, n = ndimage.label(ndimage.binary_erosion(mask, structure=erode))
    if n == 0:
        return seeds
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    sizes = ndimage.sum(np.ones_like(cores), cores, range(1, n + 1)) * voxel_ml
    big = {k + 1 for k in range(n) if sizes[k] >= _MIN_CORE_ML}
    out = seeds.copy()
    next_label = int(seeds.max()) + 1
    for seg in range(1, int(seeds.max()) + 1):
        in_seg = seeds == seg
        held = [int(c) for c in np.unique(cores[in_seg]) if int(c) in big]
        held = [c for c in held if len(set(np.unique(seeds[cores == c])) - {0}) == 1]
        if len(held) < 2:
            continue
        out[in_seg] = 0
        for c in held:
            out[cores == c] = next_label
            next_label += 1
    return out


def _near_axis(candidates: list[BodyCandidate], axis: SpineAxis) -> list[BodyCandidate]:
    """Bodies centred on the spine axis, allowing the sacrum's bend behind it below the lordosis."""
    if not candidates:
        return []
    centres = np.array([c.centroid_mm for c in candidates], dtype=np.float64)
    off = off_axis_mm(axis, centres[:, 1], centres[:, 2])
    return [c for c, d in zip(candidates, off, strict=True) if d <= _MAX_CENTRE_OFF_AXIS_MM]


def chain_filter(candidates: list[BodyCandidate], axis: SpineAxis | None = None) -> list[BodyCandidate]:
    """Keep the chain of bodies, top to bottom.

    Drops fragments much smaller than a typical body, bodies whose centre is off
    the spine axis, and bodies at either end separated from the chain by a gap
    much longer than the usual body-to-body step (bowel below the sacrum).
    """
    if not candidates:
        return []
    vols = np.array([c.volume_ml for c in candidates])
    typical = float(np.median(vols[vols >= np.median(vols)]))
    kept = [c for c in candidates if c.volume_ml >= 0.25 * typical]
    if axis is not None:
        kept = _near_axis(kept, axis)
    kept.sort(key=lambda c: c.centroid_mm[1])
    while len(kept) >= 4:
        pts = np.array([[c.centroid_mm[1], c.centroid_mm[2]] for c in kept])
        gaps = np.hypot(*np.diff(pts, axis=0).T)
        step = float(np.median(gaps))
        if gaps[-1] > 1.6 * step:
            kept = kept[:-1]
        elif gaps[0] > 1.6 * step:
            kept = kept[1:]
        else:
            break
    return kept
