"""Heights of a vertebral body on its mid-sagittal plane, expected heights, Genant grade.

Heights are measured on the sagittal slice nearest the body's left-right centre
(in the pipeline, that section as the section refiner redraws it), along the
local axis of the spine (the line joining the neighbouring bodies' centres, so
a tilted L5 is measured square to its endplates): anterior at 20 %, middle at
50 % and posterior at 80 % of the antero-posterior depth (inside the rounded
corners, which the segmentation renders least reliably), each the median of
three parallel lines 1 mm apart. The mask (or, where the caller has one, the
body's probability map) is interpolated linearly along each measuring line and
each end of a height is placed where it crosses 0.5, so heights are not
quantised to the pixel size nor to the sampling step.

Expected heights compare each body with its neighbours, not with a constant:
the posterior height is expected to match the neighbours' posterior heights,
and the anterior and middle heights to match this body's posterior height times
the neighbours' own Ha/Hp and Hm/Hp ratios, each corrected for its normal
level-to-level change (L5 is about 15 % taller in front, 5 % taller in the
middle, and its posterior wall about 2 % shorter than L4's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]

ANTERIOR, MIDDLE, POSTERIOR = 0.2, 0.5, 0.8
# sampling step along a measuring line: fine enough that the field, linear between pixel
# centres, is linear between the two samples an edge falls between (to 0.02 mm)
_STEP_MM = 0.05
# Typical Ha/Hp and Hm/Hp of healthy adults (lumbar bodies wedge slightly
# forward from L2 down, most at L5; Ha 30.3 / Hp 26.3 mm).
NORMAL_HA_HP: dict[str, float] = {
    "T11": 0.93,
    "T12": 0.93,
    "L1": 0.95,
    "L2": 0.98,
    "L3": 1.0,
    "L4": 1.04,
    "L5": 1.15,
}
# L5's middle height is the larger share of its posterior height, as its wedge puts the middle
# of its endplates further apart than the back: Hm/Hp 1.00 against 0.95-0.97 from T12 to L4 (the
# VB2/VB3 truth bodies' means, 20 per lumbar level; the phantom's L5 1.05 times its L4). Judged
# against L4's ratio, a biconcave L5 read 4-5 points too little loss (a grade 2 graded 1).
NORMAL_HM_HP: dict[str, float] = {
    "T11": 0.955,
    "T12": 0.955,
    "L1": 0.955,
    "L2": 0.955,
    "L3": 0.955,
    "L4": 0.955,
    "L5": 1.0,
}
# Typical posterior height relative to L3's: the posterior wall shortens from L3 down, most at L5
# (the VB2/VB3 truth bodies, 20 per lumbar level: L4 0.95-0.96 and L5 0.93-0.94 of L3 by median
# and mean), so a normal L5 is not judged against the taller L4 (it read 4.8 % anterior loss on
# average).
NORMAL_HP: dict[str, float] = {
    "T11": 0.95,
    "T12": 0.97,
    "L1": 0.97,
    "L2": 0.98,
    "L3": 1.0,
    "L4": 0.955,
    "L5": 0.935,
}
# Genant grades the bodies above the sacrum; S1 is part of it and has no body below to be
# compared with, so it is measured but never graded
UNGRADED_LEVELS: frozenset[str] = frozenset({"S1"})
_RATIO_RANGE = (0.8, 1.2)


@dataclass(frozen=True)
class Heights:
    ha_mm: float
    hm_mm: float
    hp_mm: float
    mid_slice: int  # canonical left-right index of the mid-sagittal slice


def mid_sagittal_slice(mask: BoolArray) -> int:
    """Index (canonical axis 0) of the slice nearest the body's left-right centre."""
    if mask.ndim != 3 or not mask.any():
        raise ValueError("mask must be a non-empty 3-D boolean array")
    per_slice = mask.sum(axis=(1, 2)).astype(float)
    centre = float((np.arange(mask.shape[0]) * per_slice).sum() / per_slice.sum())
    return int(np.clip(np.floor(centre + 0.5), 0, mask.shape[0] - 1))


def _longest_run_mm(vals: npt.NDArray[np.floating], step_mm: float) -> float:
    """Length of the longest stretch of a sampled line where ``vals >= 0.5``, ends interpolated.

    Each end is placed where the line, linear between its samples, crosses 0.5,
    so the length is not a whole number of steps.
    """
    inside = vals >= 0.5
    if not inside.any():
        return 0.0
    edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]  # run is [start, stop)
    k = int(np.argmax(stops - starts))
    first, last = int(starts[k]), int(stops[k]) - 1
    length = float(last - first)
    if first > 0:
        length += (vals[first] - 0.5) / (vals[first] - vals[first - 1])
    if last < vals.size - 1:
        length += (vals[last] - 0.5) / (vals[last] - vals[last + 1])
    return length * step_mm


def heights_2d(
    mask2d: BoolArray,
    spacing_si_ap: tuple[float, float],
    axis_si_ap: tuple[float, float] | None = None,
    edge_field: npt.NDArray[np.floating] | None = None,
) -> tuple[float, float, float]:
    """(Ha, Hm, Hp) in mm of a 2-D sagittal body mask (rows superior->inferior, cols anterior->posterior).

    ``axis_si_ap`` is the local direction of the spine (from the neighbouring
    bodies' centres); heights are measured along it. Without it the image's
    superior-inferior axis is used: a body's own shape is too square for its
    principal axes to give a stable direction.

    ``edge_field``, on the mask's grid, is measured instead of the mask: a map
    whose 0.5 level is the body's edge (a segmentation's probability), which
    places the endplates between pixels. The mask still sets where the lines run.
    """
    if mask2d.ndim != 2 or not mask2d.any():
        raise ValueError("mask2d must be a non-empty 2-D boolean array")
    if edge_field is not None and edge_field.shape != mask2d.shape:
        raise ValueError(f"edge_field must have the mask's shape {mask2d.shape}, got {edge_field.shape}")
    sy, sx = spacing_si_ap
    v = np.array([1.0, 0.0]) if axis_si_ap is None else np.asarray(axis_si_ap, dtype=float)
    if v.shape != (2,) or not np.all(np.isfinite(v)) or np.hypot(*v) == 0:
        raise ValueError(f"axis_si_ap must be a non-zero 2-vector, got {axis_si_ap!r}")
    v = v / np.hypot(*v)
    if v[0] < 0:
        v = -v
    u = np.array([-v[1], v[0]])  # perpendicular: anterior -> posterior
    if u[1] < 0:
        u = -u
    rows, cols = np.nonzero(mask2d)
    pts = np.stack([rows * sy, cols * sx], axis=1)
    centre = pts.mean(axis=0)
    a = (pts - centre) @ u
    b = (pts - centre) @ v
    # antero-posterior extent measured across the body's middle third, not at the lips
    band = np.abs(b) <= max(3.0, (np.percentile(b, 95) - np.percentile(b, 5)) / 6)
    a_lo, a_hi = np.percentile(a[band] if band.sum() > 3 else a, [1, 99])
    extent = float(np.hypot(*(np.array(mask2d.shape) * np.array([sy, sx]))))
    t = np.arange(-extent, extent, _STEP_MM)
    field = (mask2d if edge_field is None else edge_field).astype(np.float32)
    out = []
    for frac in (ANTERIOR, MIDDLE, POSTERIOR):
        runs = []
        for shift in (-1.0, 0.0, 1.0):
            base = centre + (a_lo + frac * (a_hi - a_lo) + shift) * u
            line = base[None, :] + t[:, None] * v[None, :]
            vals = ndimage.map_coordinates(
                field, [line[:, 0] / sy, line[:, 1] / sx], order=1, mode="constant"
            )
            runs.append(_longest_run_mm(vals, _STEP_MM))
        out.append(float(np.median(runs)))
    return (out[0], out[1], out[2])


def chain_axes(centroids_si_ap: list[tuple[float, float]]) -> list[tuple[float, float] | None]:
    """Local spine direction (SI, AP) at each body of a top-to-bottom chain, from its neighbours."""
    n = len(centroids_si_ap)
    pts = np.asarray(centroids_si_ap, dtype=float).reshape(n, 2)
    out: list[tuple[float, float] | None] = []
    for i in range(n):
        lo, hi = max(0, i - 1), min(n - 1, i + 1)
        if hi == lo:
            out.append(None)
            continue
        d = pts[hi] - pts[lo]
        out.append((float(d[0]), float(d[1])))
    return out


def body_heights(
    mask: BoolArray, spacing: tuple[float, float, float], axis_si_ap: tuple[float, float] | None = None
) -> Heights:
    """Heights of a canonical 3-D body mask (LR, SI, AP) on its mid-sagittal slice."""
    s = mid_sagittal_slice(mask)
    ha, hm, hp = heights_2d(mask[s], (spacing[1], spacing[2]), axis_si_ap)
    return Heights(ha, hm, hp, s)


def label_map_heights(
    labels: npt.NDArray[np.integer], spacing: tuple[float, float, float]
) -> dict[int, Heights]:
    """Heights of every body of a canonical label map (LR, SI, AP), keyed by label, top to bottom.

    Each body is measured along the axis its neighbours' centres give, as the
    analysis measures its own bodies (so truth masks can be measured the same way).
    """
    found = sorted(int(v) for v in np.unique(labels) if v > 0)
    grid_si = np.arange(labels.shape[1])[None, :, None] * spacing[1]
    grid_ap = np.arange(labels.shape[2])[None, None, :] * spacing[2]
    centres = []
    for t in found:
        m = labels == t
        centres.append((float((grid_si * m).sum() / m.sum()), float((grid_ap * m).sum() / m.sum())))
    order = sorted(range(len(found)), key=lambda i: centres[i][0])
    axes = chain_axes([centres[i] for i in order])
    return {
        found[i]: body_heights(labels == found[i], spacing, ax) for i, ax in zip(order, axes, strict=True)
    }


def genant_grade(loss_pct: float) -> int:
    """Genant semi-quantitative grade from height loss in percent."""
    if not np.isfinite(loss_pct):
        raise ValueError(f"loss_pct must be finite, got {loss_pct}")
    if loss_pct < 20.0:
        return 0
    if loss_pct < 25.0:
        return 1
    if loss_pct <= 40.0:
        return 2
    return 3


@dataclass(frozen=True)
class Deformity:
    expected_height_mm: float | None
    height_loss_pct: float | None
    genant_grade: int | None


# The thoracic bodies above the tables (T10 at the top of a lumbar image) take T11's norms, so
# they are compared with T11 as they are: a norm of 1 would expect T10 7 % taller in front than
# T11 and 5 % taller behind, and read a normal T10 as a fracture.
def _ra(level: str) -> float:
    return NORMAL_HA_HP.get(level, NORMAL_HA_HP["T11"])


def _rm(level: str) -> float:
    return NORMAL_HM_HP.get(level, NORMAL_HM_HP["T11"])


def _rp(level: str) -> float:
    return NORMAL_HP.get(level, NORMAL_HP["T11"])


def deformities(levels: list[str], heights: list[Heights]) -> list[Deformity]:
    """Expected height, height loss and Genant grade of each body against its normal neighbours.

    ``levels`` and ``heights`` are in spine order (top to bottom). Genant compares
    a body with the adjacent normal vertebrae: a neighbour found deformed on a
    previous pass is passed over for the next body beyond it (two adjacent
    fractures would otherwise lower each other's expected height). A body with
    no neighbour is compared with its own posterior height only (wedge and
    biconcave deformities still show; a uniform crush cannot).
    """
    if len(levels) != len(heights):
        raise ValueError("levels and heights must have the same length")
    n = len(heights)
    deformed: set[int] = set()
    # a fracture next to a fracture may only show once its neighbour is passed over, so repeat
    # until the deformed bodies stay the same (each pass can only change bodies next to a change)
    for _ in range(n + 1):
        out = [_deformity(levels, heights, i, _normal_neighbours(i, deformed, n)) for i in range(n)]
        now = {i for i, d in enumerate(out) if d.genant_grade}
        if now == deformed:
            break
        deformed = now
    return out


def _normal_neighbours(i: int, deformed: set[int], n: int) -> list[int]:
    """The nearest body above and below ``i`` that is not deformed."""
    out = []
    for step in (-1, 1):
        j = i + step
        while 0 <= j < n and j in deformed:
            j += step
        if 0 <= j < n:
            out.append(j)
    return out


def _deformity(levels: list[str], heights: list[Heights], i: int, neigh: list[int]) -> Deformity:
    level, h = levels[i], heights[i]
    if not neigh:
        neigh_hp = h.hp_mm
        ra = rm = 1.0
    else:
        neigh_hp = float(np.mean([heights[j].hp_mm / _rp(levels[j]) for j in neigh])) * _rp(level)
        ra = float(np.mean([heights[j].ha_mm / max(heights[j].hp_mm, 1e-3) / _ra(levels[j]) for j in neigh]))
        rm = float(np.mean([heights[j].hm_mm / max(heights[j].hp_mm, 1e-3) / _rm(levels[j]) for j in neigh]))
    if min(h.ha_mm, h.hm_mm, h.hp_mm) <= 0 or neigh_hp <= 0:
        return Deformity(None, None, None)
    # one odd neighbour must not set an absurd expectation
    ra, rm = float(np.clip(ra, *_RATIO_RANGE)), float(np.clip(rm, *_RATIO_RANGE))
    # a wedge keeps its posterior height: anterior and middle are judged against the taller
    # of this body's posterior wall and the neighbours', so a crushed back wall still counts
    ref = max(h.hp_mm, neigh_hp)
    expected = {
        "a": ref * ra * _ra(level),
        "m": ref * rm * _rm(level),
        "p": neigh_hp,
    }
    measured = {"a": h.ha_mm, "m": h.hm_mm, "p": h.hp_mm}
    losses = {k: 1.0 - measured[k] / expected[k] for k in expected}
    worst = max(losses, key=lambda k: losses[k])
    loss = max(0.0, losses[worst]) * 100.0
    return Deformity(float(expected[worst]), float(loss), genant_grade(loss))
