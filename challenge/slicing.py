"""Thick sagittal slices with gaps from a 1 mm canonical volume, and their DICOM series.

A slice of thickness ``t`` averages the 1 mm planes it covers (weighted by
overlap: partial volume across the slice), slices ``t + gap`` apart. The
series is written with ``phantom.study.sagittal_series`` and
``phantom.writer`` (DICOM I/O only), with Slice Thickness ``t`` and Spacing
Between Slices ``t + gap``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence, Volume
from phantom.acquisition import ACQUISITIONS, Acquisition
from phantom.study import ImageSeries, sagittal_series

# [k, j, i] = [left->right, superior->inferior, anterior->posterior], as the shared volumes
SAGITTAL_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
DESCRIPTIONS = {Sequence.T1: "SAG T1 FSE", Sequence.T2: "SAG T2 FSE", Sequence.STIR: "SAG STIR"}


def slab_weights(
    n_lr: int, thickness: float, gap: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(weights [slices, n_lr], the 1 mm plane nearest each slice's centre)."""
    if thickness < 1.0 or gap < 0.0:
        raise ValueError(f"thickness must be >= 1 mm and gap >= 0, got {thickness}, {gap}")
    step = thickness + gap
    n = int((n_lr - thickness) // step) + 1
    first = (n_lr - 1 - (n - 1) * step) / 2.0
    centres = first + step * np.arange(n)
    lo = centres - thickness / 2
    hi = centres + thickness / 2
    planes = np.arange(n_lr, dtype=np.float64)
    overlap = np.clip(
        np.minimum(hi[:, None], planes[None, :] + 0.5) - np.maximum(lo[:, None], planes[None, :] - 0.5),
        0.0,
        1.0,
    )
    return overlap / overlap.sum(axis=1, keepdims=True), np.rint(centres).astype(np.int64)


def thick_slices(image: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.tensordot(weights, image, axes=(1, 0)), dtype=np.float64)


def add_noise(
    image: npt.NDArray[np.float64], sigma: float, rng: np.random.Generator, blur_mm: float = 0.45
) -> npt.NDArray[np.float64]:
    """In-plane blur (the point spread at the cortex) and Rician noise."""
    img = ndimage.gaussian_filter(image, (0.0, blur_mm, blur_mm))
    return np.asarray(
        np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape)), dtype=np.float64
    )


def to_12bit(image: npt.NDArray[np.float64]) -> npt.NDArray[np.uint16]:
    hi = float(np.percentile(image, 99.95))
    return np.asarray(np.rint(np.clip(image / max(hi, 1e-9), 0.0, 1.0) * 4095), dtype=np.uint16)


def grid(shape_kji: tuple[int, int, int], step: float) -> Volume:
    return Volume(np.zeros(shape_kji, dtype=np.int16), (1.0, 1.0, step), (0.0, 0.0, 0.0), SAGITTAL_DIRECTION)


def series(
    seq: Sequence,
    pixels: npt.NDArray[np.uint16],
    geometry: Volume,
    thickness: float,
    acquisition: Acquisition | None = None,
) -> ImageSeries:
    out = sagittal_series(seq, pixels, geometry, DESCRIPTIONS[seq], acquisition or ACQUISITIONS[seq])
    return replace(out, slice_thickness=thickness)
