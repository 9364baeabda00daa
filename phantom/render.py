"""MR signal of the anatomy on sagittal and axial grids: contrast, texture, bias, noise.

Pure numpy. Grids are placed in DICOM patient coordinates (LPS, mm); the
sagittal grid is indexed ``[k, j, i]`` with ``i`` posterior, ``j`` inferior,
``k`` toward the patient's right (Image Orientation ``0\\1\\0\\0\\0\\-1``), as
the shared real volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence
from phantom.anatomy import Tissue, body_labels, tissue_map
from phantom.spine import Spine, build_spine

FloatArray = npt.NDArray[np.float64]
# 12-bit stored values.
MAX_VALUE = 4095

# Signal per tissue (T1, T2, STIR, post-contrast T1): 1.5 T fast spin echo,
# fatty adult marrow brighter than disc and muscle on T1.
_SIGNAL: dict[Tissue, tuple[float, float, float, float]] = {
    Tissue.AIR: (0, 0, 0, 0),
    Tissue.FAT: (950, 780, 45, 950),
    Tissue.MUSCLE: (340, 230, 190, 370),
    Tissue.MARROW: (680, 430, 95, 720),
    Tissue.CORTEX: (45, 40, 15, 45),
    Tissue.NUCLEUS: (330, 1050, 760, 340),
    Tissue.ANNULUS: (260, 240, 210, 280),
    Tissue.CSF: (170, 1500, 1250, 170),
    Tissue.CORD: (400, 560, 430, 400),
    Tissue.ROOT: (380, 480, 380, 400),
    Tissue.LIGAMENT: (110, 90, 80, 130),
    Tissue.VESSEL: (40, 50, 60, 60),
    Tissue.BOWEL: (330, 560, 450, 420),
    Tissue.SKIN: (520, 380, 260, 540),
    Tissue.VEIN: (420, 900, 700, 900),
    Tissue.FACET_FLUID: (200, 1350, 1150, 220),
    Tissue.DEGENERATED_NUCLEUS: (300, 420, 320, 320),
}
_TEXTURE = {
    Tissue.MARROW: 0.07,
    Tissue.FAT: 0.04,
    Tissue.MUSCLE: 0.06,
    Tissue.BOWEL: 0.5,
    Tissue.NUCLEUS: 0.04,
}
_SEQ_INDEX = {Sequence.T1: 0, Sequence.T2: 1, Sequence.STIR: 2, Sequence.T1C: 3}
SUPPORTED = tuple(_SEQ_INDEX)


def lut(sequence: Sequence) -> FloatArray:
    if sequence not in _SEQ_INDEX:
        raise ValueError(f"sequence must be one of {[s.value for s in SUPPORTED]}, got {sequence!r}")
    table = np.zeros(max(Tissue) + 1)
    for tissue, values in _SIGNAL.items():
        table[tissue] = values[_SEQ_INDEX[sequence]]
    return table


@dataclass(frozen=True)
class Placement:
    """Where the phantom sits in the patient frame: phantom mm <-> LPS mm."""

    fov_si_mm: float = 288.0
    fov_ap_mm: float = 288.0

    def to_lps(
        self, x: FloatArray, y: FloatArray, z: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        return x, z - 0.45 * self.fov_ap_mm, 0.5 * self.fov_si_mm - y

    def from_lps(
        self, lx: FloatArray, ly: FloatArray, lz: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        return lx, 0.5 * self.fov_si_mm - lz, ly + 0.45 * self.fov_ap_mm


@dataclass(frozen=True)
class SagittalGrid:
    n_slices: int = 15
    slice_mm: float = 3.5
    rows: int = 320  # j, superior -> inferior
    cols: int = 320  # i, anterior -> posterior
    pixel_mm: float = 0.9

    def __post_init__(self) -> None:
        if self.n_slices < 1 or self.rows < 16 or self.cols < 16:
            raise ValueError(f"grid too small: {self}")
        if self.slice_mm <= 0 or self.pixel_mm <= 0:
            raise ValueError(f"slice_mm and pixel_mm must be positive: {self}")

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        return (self.slice_mm, self.pixel_mm, self.pixel_mm)

    def lateral_mm(self, k: FloatArray) -> FloatArray:
        """Phantom x (patient left) of continuous slice index ``k``."""
        return -(k - (self.n_slices - 1) / 2.0) * self.slice_mm

    def geometry(self, place: Placement) -> tuple[tuple[float, float, float], tuple[float, ...]]:
        """LPS origin of voxel [0, 0, 0] and the direction matrix (ITK order, axes i, j, k)."""
        lx, ly, lz = place.to_lps(self.lateral_mm(np.array(0.0)), np.array(0.0), np.array(0.0))
        return (float(lx), float(ly), float(lz)), (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@dataclass(frozen=True)
class AxialGrid:
    """True axial slices (Image Orientation ``1\\0\\0\\0\\1\\0``) at LPS z positions."""

    z_lps: tuple[float, ...]
    rows: int = 256  # posterior
    cols: int = 256  # patient left
    pixel_mm: float = 0.7
    slice_mm: float = 4.0

    def origin(self, index: int) -> tuple[float, float, float]:
        half = 0.5 * self.cols * self.pixel_mm
        return (-half, -0.42 * self.rows * self.pixel_mm - 20.0, self.z_lps[index])


def default_spine(grid: SagittalGrid, place: Placement) -> Spine:
    return build_spine(top_y=-6.0, top_z=0.44 * place.fov_ap_mm)


def sagittal_tissue(
    spine: Spine, grid: SagittalGrid, supersample: int = 3
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Tissue codes (``supersample`` sub-slices per slice, shape (n*ss, rows, cols)) and labels."""
    jj, ii = np.meshgrid(
        np.arange(grid.rows) * grid.pixel_mm, np.arange(grid.cols) * grid.pixel_mm, indexing="ij"
    )
    a, t = spine.curve_coords(jj, ii)
    offsets = (np.arange(supersample) - (supersample - 1) / 2.0) / supersample
    ks = (np.arange(grid.n_slices)[:, None] + offsets[None, :]).ravel()
    x = grid.lateral_mm(ks)[:, None, None]
    below = spine.depth_below_skin(jj, ii)
    tissue, labels = tissue_map(spine, x, a[None], t[None], below[None])
    if supersample % 2:
        return tissue, labels[supersample // 2 :: supersample].copy()
    # No sub-slice at the slice centre: label the centre plane itself.
    centre_x = grid.lateral_mm(np.arange(grid.n_slices, dtype=float))[:, None, None]
    return tissue, body_labels(spine, centre_x, a[None], t[None])


def axial_tissue(spine: Spine, grid: AxialGrid, place: Placement, slice_index: int) -> npt.NDArray[np.uint8]:
    ox, oy, oz = grid.origin(slice_index)
    cc, rr = np.meshgrid(np.arange(grid.cols), np.arange(grid.rows))
    lx = np.asarray(ox + cc * grid.pixel_mm, dtype=np.float64)
    ly = np.asarray(oy + rr * grid.pixel_mm, dtype=np.float64)
    x, y, z = place.from_lps(lx, ly, np.full(lx.shape, oz))
    a, t = spine.curve_coords(y, z)
    tissue, _ = tissue_map(spine, x, a, t, spine.depth_below_skin(y, z))
    return tissue


def texture(tissue: npt.NDArray[np.uint8], rng: np.random.Generator, supersample: int = 1) -> FloatArray:
    """Multiplicative tissue texture (marrow trabeculae, fat, muscle, bowel), shared by all sequences."""
    amp = np.zeros(max(Tissue) + 1)
    for tis, value in _TEXTURE.items():
        amp[tis] = value
    sigma = (0.7 * supersample, 3.0, 1.5) if tissue.ndim == 3 else (3.0, 3.0)
    fine = ndimage.gaussian_filter(rng.standard_normal(tissue.shape).astype(np.float32), sigma)
    fine /= max(float(fine.std()), 1e-9)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(tissue.shape).astype(np.float32), tuple(4 * v for v in sigma)
    )
    coarse /= max(float(coarse.std()), 1e-9)
    return np.asarray(1.0 + amp[tissue] * np.where(tissue == Tissue.BOWEL, coarse, fine))


def contrast(
    tissue: npt.NDArray[np.uint8], sequence: Sequence, tex: FloatArray, supersample: int = 1
) -> FloatArray:
    """Noiseless signal, averaged over ``supersample`` sub-slices (axis 0) for partial volume."""
    signal = lut(sequence)[tissue] * tex
    if supersample > 1:
        signal = signal.reshape(-1, supersample, *signal.shape[1:]).mean(axis=1)
    return np.asarray(signal, dtype=np.float64)


def bias_field(
    shape: tuple[int, ...], posterior_axis: int, pixel_mm: float, rng: np.random.Generator
) -> FloatArray:
    """Receive-coil shading: brighter near the posterior spine coil, gentle low-frequency ripple."""
    n = shape[posterior_axis]
    depth = (n - 1 - np.arange(n)) * pixel_mm
    profile = 0.55 + 0.75 * np.exp(-depth / 120.0)
    view = [1] * len(shape)
    view[posterior_axis] = n
    coarse = ndimage.zoom(rng.standard_normal(tuple(4 for _ in shape)), [s / 4 for s in shape], order=3)
    coarse = coarse[tuple(slice(0, s) for s in shape)]
    return np.asarray(profile.reshape(view) * (1.0 + 0.06 * coarse))


def blur(signal: FloatArray, sigma_px: float = 0.6) -> FloatArray:
    """In-plane point-spread of a finite k-space acquisition (the last two axes)."""
    sigma = (0.0,) * (signal.ndim - 2) + (sigma_px, sigma_px)
    return np.asarray(ndimage.gaussian_filter(signal, sigma))


def add_noise(signal: FloatArray, sigma: float, rng: np.random.Generator) -> npt.NDArray[np.uint16]:
    """Rician magnitude noise, stored as 12-bit unsigned."""
    noisy = np.hypot(
        signal + sigma * rng.standard_normal(signal.shape), sigma * rng.standard_normal(signal.shape)
    )
    return np.clip(np.rint(noisy), 0, MAX_VALUE).astype(np.uint16)
