"""Reference regions per level for signal ratios and canal measurements.

:func:`reference_regions` gives, for every labelled level of a
:class:`~analysis.results.SpineSegmentation`, boolean masks on the label grid:

- ``body``: the vertebral body (the label itself);
- ``disc_above`` / ``disc_below``: the intervertebral disc between this body and
  its neighbour, or ``None`` where the neighbour is not labelled (for example
  below L5 when S1 was not segmented). A disc is the space inside the convex
  hull of the two bodies' sections that belongs to neither, eroded by 1 pixel so
  endplate partial volume does not leak into disc signal;
- ``muscle``: paraspinal muscle (multifidus / erector spinae) behind this level:
  parasagittal slices 20-40 mm either side of the midline, 35-65 mm behind the
  posterior wall, over the body's height, keeping the middle 60 % of the
  intensities of the reference image (drops fat streaks and bone);
- ``canal``: the spinal canal at this level: midline slices (+-6 mm), from 1 to
  17 mm behind the posterior wall of the body and its discs.

:func:`canal_centreline` gives the canal's centre line (LPS mm, top to bottom)
for canal-diameter measurements. The geometry comes from the labels; only the
muscle region looks at intensities (of the ``image`` passed in, which must be on
the label grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.morphology import convex_hull_image

from analysis.results import SpineSegmentation
from analysis.vertebrae.geometry import Canonical, canonical_of, canonical_to_lps
from analysis.vertebrae.measure import chain_axes
from analysis.volume import Volume

BoolArray = npt.NDArray[np.bool_]

_CANAL_MM = (1.0, 17.0)
_CANAL_HALF_WIDTH_MM = 6.0
_MUSCLE_LR_MM = (20.0, 40.0)
_MUSCLE_AP_MM = (35.0, 65.0)


@dataclass(frozen=True, eq=False)
class LevelRegions:
    """Masks on the label grid (array order of ``SpineSegmentation.labels``)."""

    level: str
    body: BoolArray
    disc_above: BoolArray | None
    disc_below: BoolArray | None
    muscle: BoolArray
    canal: BoolArray


@dataclass(frozen=True)
class _Frame:
    centre: npt.NDArray[np.float64]  # canonical mm (LR, SI, AP)
    v: npt.NDArray[np.float64]  # spine direction in (SI, AP), inferior
    u: npt.NDArray[np.float64]  # perpendicular in (SI, AP), posterior
    posterior_wall_mm: float  # along u from the centre
    half_height_mm: float  # along v


def _frames(masks: list[BoolArray], spacing: tuple[float, float, float]) -> list[_Frame]:
    grid = [np.arange(n, dtype=float) * s for n, s in zip(masks[0].shape, spacing, strict=True)]
    cents = []
    for m in masks:
        idx = np.nonzero(m)
        cents.append(np.array([grid[a][idx[a]].mean() for a in range(3)]))
    axes = chain_axes([(float(c[1]), float(c[2])) for c in cents])
    out = []
    for m, c, ax in zip(masks, cents, axes, strict=True):
        v = np.array([1.0, 0.0]) if ax is None else np.asarray(ax, dtype=float)
        v = v / np.hypot(*v)
        if v[0] < 0:
            v = -v
        u = np.array([-v[1], v[0]])
        if u[1] < 0:
            u = -u
        _, rows, cols = np.nonzero(m)
        pts = np.stack([rows * spacing[1] - c[1], cols * spacing[2] - c[2]], axis=1)
        a, b = pts @ u, pts @ v
        central = np.abs(b) <= 5.0
        wall = float(np.percentile(a[central] if central.sum() > 3 else a, 98))
        out.append(_Frame(c, v, u, wall, float(np.percentile(np.abs(b), 98))))
    return out


def _disc_between(upper: BoolArray, lower: BoolArray) -> BoolArray:
    disc = np.zeros(upper.shape, dtype=bool)
    for k in range(upper.shape[0]):
        if not (upper[k].any() and lower[k].any()):
            continue
        hull = convex_hull_image(upper[k] | lower[k])
        disc[k] = ndimage.binary_erosion(hull & ~upper[k] & ~lower[k])
    return disc


def _local_coords(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], f: _Frame
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    lr = np.arange(shape[0]) * spacing[0] - f.centre[0]
    si = np.arange(shape[1])[:, None] * spacing[1] - f.centre[1]
    ap = np.arange(shape[2])[None, :] * spacing[2] - f.centre[2]
    return lr, si * f.u[0] + ap * f.u[1], si * f.v[0] + ap * f.v[1]


def reference_regions(seg: SpineSegmentation, image: Volume) -> dict[str, LevelRegions]:
    """Body, adjacent discs, paraspinal muscle and canal masks for every labelled level."""
    if not isinstance(seg, SpineSegmentation):
        raise TypeError(f"seg must be a SpineSegmentation, got {type(seg).__name__}")
    if not isinstance(image, Volume) or image.array.shape != seg.labels.array.shape:
        raise ValueError("image must be a Volume on the grid of seg.labels")
    can = canonical_of(seg.labels)
    labels = can.to_canonical(np.asarray(seg.labels.array))
    pixels = np.asarray(can.to_canonical(np.asarray(image.array, dtype=np.float32)), dtype=np.float32)
    bodies = sorted(
        (b for b in seg.bodies if (labels == b.label).any()),
        key=lambda b: float(np.nonzero((labels == b.label).any(axis=(0, 2)))[0].mean()),
    )
    if not bodies:
        return {}
    masks = [labels == b.label for b in bodies]
    frames = _frames(masks, can.spacing)
    discs = [_disc_between(masks[i], masks[i + 1]) for i in range(len(masks) - 1)]
    out: dict[str, LevelRegions] = {}
    for i, (b, m, f) in enumerate(zip(bodies, masks, frames, strict=True)):
        lr, a, h = _local_coords(can.shape, can.spacing, f)
        within_height = np.abs(h) <= f.half_height_mm
        behind = a - f.posterior_wall_mm
        canal_2d = (behind >= _CANAL_MM[0]) & (behind <= _CANAL_MM[1]) & (np.abs(h) <= f.half_height_mm + 6.0)
        canal = (np.abs(lr) <= _CANAL_HALF_WIDTH_MM)[:, None, None] & canal_2d[None]
        box_2d = within_height & (behind >= _MUSCLE_AP_MM[0]) & (behind <= _MUSCLE_AP_MM[1])
        lateral = (np.abs(lr) >= _MUSCLE_LR_MM[0]) & (np.abs(lr) <= _MUSCLE_LR_MM[1])
        box = lateral[:, None, None] & box_2d[None]
        muscle = np.zeros(can.shape, dtype=bool)
        if box.any():
            lo, hi = np.percentile(pixels[box], [20, 80])
            muscle = box & (pixels >= lo) & (pixels <= hi)
        out[b.level] = LevelRegions(
            level=b.level,
            body=_back(can, m),
            disc_above=_back(can, discs[i - 1]) if i > 0 and discs[i - 1].any() else None,
            disc_below=_back(can, discs[i]) if i < len(discs) and discs[i].any() else None,
            muscle=_back(can, muscle),
            canal=_back(can, canal & (labels == 0)),
        )
    return out


def _back(can: Canonical, mask: BoolArray) -> BoolArray:
    return np.asarray(can.from_canonical(mask), dtype=bool)


def canal_centreline(seg: SpineSegmentation) -> npt.NDArray[np.float64]:
    """LPS points (N, 3), top to bottom, 9 mm behind each body's posterior wall at mid-height."""
    can = canonical_of(seg.labels)
    labels = can.to_canonical(np.asarray(seg.labels.array))
    masks = [labels == b.label for b in seg.bodies if (labels == b.label).any()]
    if not masks:
        return np.zeros((0, 3))
    frames = sorted(_frames(masks, can.spacing), key=lambda f: f.centre[1])
    pts = []
    for f in frames:
        d = f.posterior_wall_mm + sum(_CANAL_MM) / 2
        mm = np.array([f.centre[0], f.centre[1] + d * f.u[0], f.centre[2] + d * f.u[1]])
        pts.append(mm / np.array(can.spacing))
    return canonical_to_lps(seg.labels, can, np.array(pts))
