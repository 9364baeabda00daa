"""The working grid of the vertebral-body network: fixed in-plane pixel size, robust intensity scale.

Each sagittal slice is resampled to ``WORK_MM`` pixels so that a pixel means
the same millimetres on every scanner. Intensities are put on a robust scale
(median and inter-decile range of the foreground), so any unit works: uint8
rescaled research data, int16 scanner values, floats.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

WORK_MM = 2.0
FloatArray = npt.NDArray[np.float32]

def normalise_intensity(array: npt.NDArray[np.generic]) -> FloatArray:
    """Robust intensity scale: foreground median 0, inter-decile range 1."""
    data = np.asarray(array, dtype=np.float32)
    hi = float(np.percentile(data, 99.5))
    if not np.isfinite(hi) or hi <= float(data.min()):
        return np.zeros_like(data)
    fg = data[data > data.min() + 0.05 * (hi - data.min())]
    if fg.size < 100:
        fg = data.ravel()
    p10, p50, p90 = np.percentile(fg, [10, 50, 90])
    scale = max(float(p90 - p10), 1e-6)
    return ((data - float(p50)) / scale).astype(np.float32)


def work_shape(shape_2d: tuple[int, int], spacing_2d: tuple[float, float]) -> tuple[int, int]:
    return (
        max(8, round(shape_2d[0] * spacing_2d[0] / WORK_MM)),
        max(8, round(shape_2d[1] * spacing_2d[1] / WORK_MM)),
    )


def resample_2d(image: npt.NDArray[np.generic], out_shape: tuple[int, int], order: int = 1) -> FloatArray:
    """Resample a 2-D array to ``out_shape`` with pixel centres aligned to the same extent."""
    rows = (np.arange(out_shape[0]) + 0.5) * image.shape[0] / out_shape[0] - 0.5
    cols = (np.arange(out_shape[1]) + 0.5) * image.shape[1] / out_shape[1] - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(
        np.asarray(image, dtype=np.float32), [rr, cc], order=order, mode="nearest"
    ).astype(np.float32)


def volume_to_work(canonical: npt.NDArray[np.generic], spacing: tuple[float, float, float]) -> FloatArray:
    """Normalised canonical volume (LR, SI, AP) resampled in-plane to the working grid."""
    norm = normalise_intensity(canonical)
    shape = work_shape((norm.shape[1], norm.shape[2]), (spacing[1], spacing[2]))
    return np.stack([resample_2d(s, shape) for s in norm], axis=0)
