"""Pixel features for the vertebral-body classifier, on a fixed in-plane working grid.

Each sagittal slice is resampled to ``WORK_MM`` pixels so that the features mean
the same millimetres on every scanner. Intensities are put on a robust scale
(median and inter-decile range of the foreground), so any unit works: uint8
rescaled research data, int16 scanner values, floats.

Stage 1 sees the image only: multi-scale smoothing, gradients, Hessian
eigenvalues and the smoothed image at offsets along the spine's axes (the disc
above and below, the canal behind). Stage 2 ("auto-context") adds the stage-1
probability at the same offsets and in the neighbouring slices, which is what
lets it separate a body from bone-like tissue elsewhere and find the last body
above the sacrum (L5).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

WORK_MM = 2.0
FloatArray = npt.NDArray[np.float32]

_SMOOTH_SIGMAS = (1.0, 2.0, 4.0, 8.0)
_IMAGE_OFFSETS = ((-10, 0), (-5, 0), (5, 0), (10, 0), (0, -5), (0, 5), (0, 10), (-20, 0), (20, 0), (0, -10))
_PROB_OFFSETS = (
    (-4, 0), (-8, 0), (-12, 0), (-18, 0), (-25, 0), (4, 0), (8, 0), (12, 0), (18, 0), (25, 0), (35, 0),
    (0, -4), (0, -8), (0, -14), (0, 4), (0, 8), (0, 14), (12, -8), (12, 8), (-12, -8), (-12, 8),
    (25, -10), (25, 10), (35, -15),
)  # fmt: skip


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


def _shift(image: FloatArray, dy: int, dx: int) -> FloatArray:
    """``out[y, x] = image[y + dy, x + dx]`` with edge values outside."""
    h, w = image.shape
    pad = max(abs(dy), abs(dx))
    padded = np.pad(image, pad, mode="edge")
    return padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def image_features(slice_2d: FloatArray) -> FloatArray:
    """Stage-1 features of one normalised slice on the working grid, shape (H, W, F)."""
    feats: list[FloatArray] = [slice_2d]
    smooth = {s: ndimage.gaussian_filter(slice_2d, s) for s in _SMOOTH_SIGMAS}
    feats.extend(smooth[s] for s in _SMOOTH_SIGMAS)
    for s in (1.0, 2.0, 4.0):
        feats.append(ndimage.gaussian_gradient_magnitude(slice_2d, s).astype(np.float32))
    for s in (1.5, 3.0, 6.0):
        hyy = ndimage.gaussian_filter(slice_2d, s, order=(2, 0))
        hxx = ndimage.gaussian_filter(slice_2d, s, order=(0, 2))
        hxy = ndimage.gaussian_filter(slice_2d, s, order=(1, 1))
        root = np.sqrt(((hyy - hxx) / 2) ** 2 + hxy**2)
        mean = (hyy + hxx) / 2
        feats.extend([(mean + root) * s * s, (mean - root) * s * s, hyy * s * s])
    local_mean = ndimage.uniform_filter(slice_2d, 15)
    local_sq = ndimage.uniform_filter(slice_2d * slice_2d, 15)
    local_std = np.sqrt(np.maximum(local_sq - local_mean**2, 1e-6))
    feats.append((smooth[1.0] - local_mean) / local_std)
    for dy, dx in _IMAGE_OFFSETS:
        feats.append(_shift(smooth[2.0], dy, dx))
        feats.append(_shift(smooth[2.0], dy, dx) - smooth[2.0])
    return np.stack(feats, axis=-1).astype(np.float32)


def context_features(prob: FloatArray, prob_neighbours: FloatArray) -> FloatArray:
    """Stage-2 context of one slice: stage-1 body probability around each pixel, (H, W, F)."""
    feats: list[FloatArray] = [prob, prob_neighbours]
    p2 = ndimage.gaussian_filter(prob, 2.0)
    p5 = ndimage.gaussian_filter(prob, 5.0)
    feats.extend([p2, p5])
    for dy, dx in _PROB_OFFSETS:
        feats.append(_shift(p2, dy, dx))
    # how much body lies below and above along the column (the sacrum ends the chain)
    col = ndimage.uniform_filter1d(p2, 31, axis=1)
    cum = np.cumsum(col, axis=0, dtype=np.float32)
    total = cum[-1:, :]
    feats.append((cum / (total + 1.0)).astype(np.float32))
    feats.append(((total - cum) / 30.0).astype(np.float32))
    feats.append((cum / 30.0).astype(np.float32))
    return np.stack(feats, axis=-1).astype(np.float32)


def volume_to_work(canonical: npt.NDArray[np.generic], spacing: tuple[float, float, float]) -> FloatArray:
    """Normalised canonical volume (LR, SI, AP) resampled in-plane to the working grid."""
    norm = normalise_intensity(canonical)
    shape = work_shape((norm.shape[1], norm.shape[2]), (spacing[1], spacing[2]))
    return np.stack([resample_2d(s, shape) for s in norm], axis=0)


def neighbour_mean(prob: FloatArray, spacing_lr: float) -> FloatArray:
    """Mean probability of the slices either side (about 4 mm away), per slice."""
    step = max(1, round(4.0 / spacing_lr))
    before = np.concatenate([prob[:step] * 0, prob[:-step]], axis=0) if prob.shape[0] > step else prob * 0
    after = np.concatenate([prob[step:], prob[:step] * 0], axis=0) if prob.shape[0] > step else prob * 0
    return ((before + after) / 2).astype(np.float32)
