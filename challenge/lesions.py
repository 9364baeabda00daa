"""Lesions, extra-osseous masses and benign look-alikes drawn into canonical 1 mm images.

Works on any ``[lr, si, ap]`` 1 mm image set with a VerSe body label map
(synthetic or real). Shapes: lobulated (a cluster of spheres), irregular (a
noise-modulated ellipsoid), a thin sheet along a wall, diffuse (most of the
body). A mass grows through the wall on one side (epidural: the posterior wall
near the midline; paravertebral: the anterior or anterolateral wall) to a
drawn thickness beyond the body's outline, and the cortex under it is
replaced. Signal is a ratio of the study's median body marrow per sequence,
blended with a soft edge (partial volume). Look-alikes (haemangioma, fat
island, heterogeneous red marrow) change signal but are not tumour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# marrow ratio of tumour per sequence at contrast q = 0 (faint) and q = 1 (conspicuous)
TUMOUR_RATIO: dict[Sequence, tuple[float, float]] = {
    Sequence.T1: (0.92, 0.30),
    Sequence.T2: (1.12, 2.45),
    Sequence.STIR: (1.30, 5.00),
}
MIMIC_RATIO: dict[str, dict[Sequence, float]] = {
    "haemangioma": {Sequence.T1: 1.30, Sequence.T2: 1.65, Sequence.STIR: 1.40},
    "fat": {Sequence.T1: 1.45, Sequence.T2: 1.70, Sequence.STIR: 0.40},
}
# heterogeneous red marrow: darker on T1, brighter on T2 and STIR (per unit of smoothed noise)
HETERO_AMPLITUDE: dict[Sequence, float] = {Sequence.T1: -0.12, Sequence.T2: 0.08, Sequence.STIR: 0.18}


@dataclass(frozen=True)
class LesionPlan:
    level: str
    label: int
    shape: str  # lobulated | irregular | sheet | diffuse
    contrast: float  # 0..1
    extension: str  # none | epidural | paravertebral
    extension_mm: float  # drawn thickness beyond the wall (0: none)
    side: str  # posterior | anterior: where a sheet lies or the mass breaks out


@dataclass(frozen=True)
class Drawn:
    mask: BoolArray  # lesion tissue, inside and outside the body
    extension_mm: float  # measured: deepest lesion voxel outside the body (mm)
    epidural: bool


def _grid(shape: tuple[int, ...]) -> tuple[FloatArray, FloatArray, FloatArray]:
    lr, si, ap = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij", sparse=True)
    return lr, si, ap


def marrow_reference(
    images: Mapping[Sequence, FloatArray], labels: npt.NDArray[np.integer]
) -> dict[Sequence, float]:
    core = ndimage.binary_erosion(labels > 0, iterations=2)
    return {seq: float(np.median(img[core])) for seq, img in images.items()}


def _wall_point(body: BoolArray, side: str, rng: np.random.Generator, lateral: bool) -> tuple[int, int, int]:
    """A point on the body's posterior or anterior wall in its middle height."""
    idx = np.nonzero(body)
    c_lr, c_si = float(idx[0].mean()), float(idx[1].mean())
    si_lo, si_hi = idx[1].min(), idx[1].max()
    si0 = round(c_si + rng.uniform(-0.2, 0.2) * (si_hi - si_lo))
    lr0 = round(c_lr + (rng.choice([-1, 1]) * rng.uniform(6, 12) if lateral else rng.uniform(-3, 3)))
    for d_lr in (0, 1, -1, 2, -2, 3, -3, 4, -4, 6, -6):
        col = body[lr0 + d_lr, si0] if 0 <= lr0 + d_lr < body.shape[0] else np.zeros(1, bool)
        if col.any():
            aps = np.nonzero(col)[0]
            return lr0 + d_lr, si0, int(aps.max() if side == "posterior" else aps.min())
    aps = np.nonzero(body[round(c_lr), round(c_si)])[0]
    return round(c_lr), round(c_si), int(aps.max() if side == "posterior" else aps.min())


def _ellipsoid(
    g: tuple[FloatArray, FloatArray, FloatArray], c: tuple[float, float, float], r: tuple[float, float, float]
) -> FloatArray:
    return np.asarray(sum(((x - ci) / ri) ** 2 for x, ci, ri in zip(g, c, r, strict=True)), dtype=np.float64)


def draw_lesion(labels: npt.NDArray[np.integer], plan: LesionPlan, rng: np.random.Generator) -> Drawn:
    body = labels == plan.label
    if not body.any():
        raise ValueError(f"no body labelled {plan.label} ({plan.level}) to implant into")
    g = _grid(body.shape)
    inward = -1.0 if plan.side == "posterior" else 1.0
    lateral = plan.extension == "paravertebral" and rng.random() < 0.5
    lr0, si0, ap0 = _wall_point(body, plan.side, rng, lateral)
    touches = plan.extension != "none" or plan.shape == "sheet"
    if plan.shape == "diffuse":
        spots = ndimage.gaussian_filter(rng.standard_normal(body.shape), 3.0)
        core = body & (spots < np.percentile(spots[body], float(rng.uniform(80, 100))))
    elif plan.shape == "sheet":
        thick = float(rng.uniform(2.5, 4.5))
        near = (
            (np.abs(g[2] - ap0) <= thick)
            & (np.abs(g[1] - si0) <= rng.uniform(7, 11))
            & (np.abs(g[0] - lr0) <= rng.uniform(8, 14))
        )
        core = body & near
    else:
        radius = float(rng.uniform(4.0, 8.0))
        if touches:
            c = (float(lr0), float(si0), ap0 + inward * (radius - 1.0))
        else:
            idx = np.nonzero(ndimage.binary_erosion(body, iterations=int(radius)) if radius < 9 else body)
            if idx[0].size == 0:
                idx = np.nonzero(body)
            pick = int(rng.integers(idx[0].size))
            c = (float(idx[0][pick]), float(idx[1][pick]), float(idx[2][pick]))
        if plan.shape == "lobulated":
            level = _ellipsoid(g, c, (radius,) * 3)
            for _ in range(int(rng.integers(2, 5))):
                off = rng.normal(0.0, radius * 0.6, 3)
                r = radius * float(rng.uniform(0.5, 0.8))
                level = np.minimum(
                    level, _ellipsoid(g, tuple(ci + oi for ci, oi in zip(c, off, strict=True)), (r, r, r))
                )
        else:  # irregular
            r3 = (
                radius * rng.uniform(0.8, 1.4),
                radius * rng.uniform(0.8, 1.5),
                radius * rng.uniform(0.6, 1.1),
            )
            noise = ndimage.gaussian_filter(rng.standard_normal(body.shape), 1.8)
            level = _ellipsoid(g, c, r3) + 1.6 * noise / max(float(noise.std()), 1e-9) * 0.3
        core = body & (level <= 1.0)
    mask = core.copy()
    ext = 0.0
    epidural = False
    if plan.extension != "none" and plan.extension_mm > 0:
        outside = ~(labels > 0)
        dist = ndimage.distance_transform_edt(outside)
        a_si = float(rng.uniform(6.0, 11.0))
        a_lr = float(rng.uniform(5.0, 8.0)) if plan.extension == "epidural" else float(rng.uniform(6.0, 12.0))
        t = plan.extension_mm
        centre = (float(lr0), float(si0), float(ap0))
        shell = _ellipsoid(g, centre, (a_lr, a_si, t + 2.0))
        side_ok = (g[2] - ap0) * (-inward) >= -1.0
        mass = (shell <= 1.0) & side_ok & outside & (dist <= t + 0.5)
        # lobulation: a second, smaller lobe beside the first
        lobe_c = (
            centre[0] + rng.uniform(-3, 3),
            centre[1] + rng.uniform(-4, 4),
            centre[2] - inward * 0.5 * t,
        )
        lobe = (
            (_ellipsoid(g, lobe_c, (0.6 * a_lr, 0.6 * a_si, 0.55 * t + 1.0)) <= 1.0)
            & outside
            & (dist <= t + 0.5)
            & side_ok
        )
        mass |= lobe
        breach = body & (_ellipsoid(g, centre, (a_lr * 0.8, a_si * 0.8, 5.0)) <= 1.0)
        mask |= mass | breach
        if mass.any():
            ext = float(dist[mass].max())
        epidural = plan.extension == "epidural" and bool(mass.any())
    return Drawn(mask, ext, epidural)


def _soft(mask: BoolArray) -> FloatArray:
    """Blend weight: 1 inside, a 0.6 mm Gaussian edge outside (partial volume)."""
    return np.asarray(
        np.maximum(mask.astype(np.float64), ndimage.gaussian_filter(mask.astype(np.float64), 0.6)),
        dtype=np.float64,
    )


def paint(
    images: dict[Sequence, FloatArray],
    mask: BoolArray,
    ratios: Mapping[Sequence, float],
    reference: Mapping[Sequence, float],
    rng: np.random.Generator,
) -> None:
    """Replace the tissue under ``mask`` by ``ratio`` x the study's marrow, with texture."""
    alpha = _soft(mask)
    texture = 1.0 + 0.05 * ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0) / 0.2
    for seq, img in images.items():
        if seq not in ratios:
            continue
        value = ratios[seq] * reference[seq] * texture
        images[seq] = img * (1.0 - alpha) + value * alpha


def tumour_ratios(contrast: float, rng: np.random.Generator) -> dict[Sequence, float]:
    out = {}
    for seq, (faint, strong) in TUMOUR_RATIO.items():
        q = float(np.clip(contrast + rng.normal(0.0, 0.05), 0.0, 1.0))
        out[seq] = faint + q * (strong - faint)
    return out


def draw_mimic(labels: npt.NDArray[np.integer], label: int, rng: np.random.Generator) -> BoolArray:
    """A round haemangioma or fat island inside one body (3.5-7 mm radius)."""
    body = labels == label
    inner = ndimage.binary_erosion(body, iterations=5)
    idx = np.nonzero(inner if inner.any() else body)
    pick = int(rng.integers(idx[0].size))
    r = float(rng.uniform(3.5, 7.0))
    g = _grid(body.shape)
    return body & (
        _ellipsoid(g, (float(idx[0][pick]), float(idx[1][pick]), float(idx[2][pick])), (r, r, r)) <= 1.0
    )


def heterogeneous_marrow(
    images: dict[Sequence, FloatArray], labels: npt.NDArray[np.integer], rng: np.random.Generator
) -> None:
    """Patchy red marrow in every body: a smooth field, darker on T1 and brighter on T2/STIR."""
    field = ndimage.gaussian_filter(rng.standard_normal(labels.shape), 3.0)
    field = np.clip(field / max(float(field[labels > 0].std()), 1e-9), -2.5, 2.5)
    bodies = labels > 0
    for seq, img in images.items():
        amp = HETERO_AMPLITUDE.get(seq, 0.1)
        images[seq] = np.where(bodies, img * (1.0 + amp * field), img)
