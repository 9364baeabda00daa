"""Tissue signal of implanted abnormalities, relative to the image's own tissue.

Absolute MR signal is arbitrary (the shared volumes are rescaled uint8), so
every implanted intensity is a multiple of a reference measured in the same
image: the body's own normal marrow and its adjacent discs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence

FloatArray = npt.NDArray[np.float64]


class Tissue(StrEnum):
    TUMOUR = "tumour"
    EDEMA_BAND = "edema_band"  # band-like line under a benign fracture's endplate
    FLUID = "fluid"  # fluid sign


@dataclass(frozen=True)
class Reference:
    """Median normal marrow, disc and bright-fluid signal near one body, robust noise CV."""

    marrow: float
    disc: float
    fluid: float
    noise_cv: float


def references(image: FloatArray, labels: npt.NDArray[np.integer], label: int) -> Reference:
    """Measure marrow (eroded body) and disc (gaps to the neighbouring bodies) signal."""
    body = labels == label
    core = ndimage.binary_erosion(body, iterations=1)
    core = core if core.sum() >= 20 else body
    vals = image[core]
    marrow = float(np.median(vals))
    mad = float(np.median(np.abs(vals - marrow))) * 1.4826
    disc = _disc_signal(image, labels, label)
    if disc is None:
        disc = float(np.percentile(image, 60))
    fluid = float(np.percentile(image, 99.5))
    return Reference(
        marrow=max(marrow, 1e-6),
        disc=max(disc, 1e-6),
        fluid=fluid,
        noise_cv=min(mad / max(marrow, 1e-6), 0.3),
    )


def _disc_signal(image: FloatArray, labels: npt.NDArray[np.integer], label: int) -> float | None:
    """Median of the voxels lying between this body and the nearest body above or below it."""
    body = labels == label
    cols = body.any(axis=1)  # (k, i) footprint
    others = (labels != 0) & ~body
    j = np.arange(labels.shape[1])[None, :, None]
    top = np.where(body, j, labels.shape[1]).min(axis=1)
    bot = np.where(body, j, -1).max(axis=1)
    above = np.where(others & (j < top[:, None, :]), j, -1).max(axis=1)
    below = np.where(others & (j > bot[:, None, :]), j, labels.shape[1]).min(axis=1)
    gap_above = cols & (above >= 0) & (top - above > 3)
    gap_below = cols & (below < labels.shape[1]) & (below - bot > 3)
    # Use the central third of the gap to stay clear of the endplates.
    inner = (j > (above + (top - above) / 3)[:, None, :]) & (j < (top - (top - above) / 3)[:, None, :])
    inner_b = (j > (bot + (below - bot) / 3)[:, None, :]) & (j < (below - (below - bot) / 3)[:, None, :])
    sel = (inner & gap_above[:, None, :]) | (inner_b & gap_below[:, None, :])
    vals = image[sel]
    return float(np.median(vals)) if vals.size >= 10 else None


def target(tissue: Tissue, sequence: Sequence, ref: Reference, enhancing: bool = True) -> float:
    """Signal of ``tissue`` on ``sequence`` in the scale of the image ``ref`` was measured on."""
    low_t1 = 0.65 * min(ref.disc, ref.marrow)
    bright_fluid = max(ref.fluid, 2.5 * ref.marrow, 1.3 * ref.disc)
    if sequence == Sequence.T1:
        return {Tissue.TUMOUR: low_t1, Tissue.EDEMA_BAND: 0.7 * low_t1, Tissue.FLUID: 0.4 * low_t1}[tissue]
    if sequence == Sequence.T1C:
        tumour = 0.95 * ref.marrow if enhancing else low_t1
        return {Tissue.TUMOUR: tumour, Tissue.EDEMA_BAND: 0.8 * ref.marrow, Tissue.FLUID: 0.4 * low_t1}[
            tissue
        ]
    if sequence == Sequence.STIR:
        return {
            Tissue.TUMOUR: max(4.0 * ref.marrow, 1.0 * ref.disc),
            Tissue.EDEMA_BAND: 2.0 * ref.marrow,
            Tissue.FLUID: max(bright_fluid, 3.5 * ref.marrow),
        }[tissue]
    # T2 and any other T2-like contrast (Dixon water, unknown).
    return {
        Tissue.TUMOUR: 1.6 * ref.marrow,
        Tissue.EDEMA_BAND: 1.35 * ref.marrow,
        Tissue.FLUID: bright_fluid,
    }[tissue]


def paint(
    image: FloatArray,
    mask: npt.NDArray[np.bool_],
    inside_body: npt.NDArray[np.bool_],
    value: float,
    ref: Reference,
    rng: np.random.Generator,
    heterogeneity: npt.NDArray[np.float64] | None = None,
) -> None:
    """Give ``mask`` the signal ``value`` in place, softly at its margin.

    Inside the body the marrow's own texture is kept (scaled); outside it the
    tissue gets the marrow's noise level around ``value``.
    """
    if not mask.any():
        return
    weight = np.clip(ndimage.gaussian_filter(mask.astype(float), 0.6), 0.0, 1.0)
    weight = np.where(mask | ndimage.binary_dilation(mask), weight, 0.0)
    weight[mask] = np.maximum(weight[mask], 0.85)
    level = np.full(image.shape, value)
    if heterogeneity is not None:
        level = level * (1.0 + heterogeneity)
    scaled = image * (level / ref.marrow)
    grain = ndimage.gaussian_filter(rng.standard_normal(image.shape), 0.8)
    grain /= max(float(grain.std()), 1e-9)
    noisy = level * (1.0 + 0.7 * ref.noise_cv * grain)
    new = np.where(inside_body, scaled, noisy)
    image[...] = (1.0 - weight) * image + weight * new


def as_dtype(image: FloatArray, dtype: np.dtype) -> np.ndarray:
    """``image`` in the original volume's ``dtype``: rounded and clipped to an integer type's range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return image.astype(dtype)
