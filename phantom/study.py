"""A synthetic lumbar MRI study in memory: series, label map and ground truth (pure numpy).

:func:`build_phantom` renders the anatomy of ``anatomy`` on a sagittal grid
(T1, T2, STIR, optionally post-contrast T1), implants ``spec`` with
:func:`phantom.implants.implant`, adds Rician noise and optionally an
axial T2 stack through L3-S1. ``writer`` turns the result into DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Plane, Sequence, Volume
from phantom import render
from phantom.acquisition import Acquisition
from phantom.implants import ImplantSpec, implant

SAGITTAL_ORIENTATION = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class ImageSeries:
    """One series' pixels ``[slice, row, column]`` and geometry (LPS mm)."""

    sequence: Sequence
    plane: Plane
    pixels: npt.NDArray[np.uint16]
    positions: tuple[tuple[float, float, float], ...]  # Image Position (Patient) per slice
    orientation: tuple[float, ...]  # Image Orientation (Patient)
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slice_thickness: float
    slice_spacing: float
    description: str
    acquisition: Acquisition | None = None  # None: the default for ``sequence``

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or len(self.positions) != self.pixels.shape[0]:
            raise ValueError("pixels must be [slice, row, column] with one position per slice")
        if len(self.orientation) != 6:
            raise ValueError(f"orientation must have 6 values, got {self.orientation}")


@dataclass(frozen=True)
class PhantomStudy:
    series: tuple[ImageSeries, ...]
    labels: Volume  # vertebral-body labels on the sagittal grid (VerSe)
    truth: dict[str, Any] = field(default_factory=dict)
    lesions: Volume | None = None  # lesion ids (truth "lesions"), same grid as ``labels``


def sagittal_series(
    sequence: Sequence,
    pixels: npt.NDArray[np.uint16],
    volume_geometry: Volume,
    description: str,
    acquisition: Acquisition | None = None,
) -> ImageSeries:
    """A sagittal series whose slices are the ``k`` planes of ``volume_geometry``'s grid."""
    spacing = volume_geometry.spacing
    positions = tuple(
        tuple(float(v) for v in volume_geometry.index_to_lps((0.0, 0.0, float(k))))
        for k in range(pixels.shape[0])
    )
    d = volume_geometry.direction_matrix
    orientation = (*d[:, 0], *d[:, 1])
    return ImageSeries(
        sequence=sequence,
        plane=Plane.SAGITTAL,
        pixels=pixels,
        positions=positions,  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in orientation),
        pixel_spacing=(spacing[1], spacing[0]),
        slice_thickness=spacing[2],
        slice_spacing=spacing[2],
        description=description,
        acquisition=acquisition,
    )


_DESCRIPTIONS = {
    Sequence.T1: "SAG T1 TSE",
    Sequence.T2: "SAG T2 TSE",
    Sequence.STIR: "SAG STIR",
    Sequence.T1C: "SAG T1 TSE POST GD",
}


def build_phantom(
    spec: ImplantSpec,
    rng: np.random.Generator,
    sequences: tuple[Sequence, ...] = (Sequence.T1, Sequence.T2, Sequence.STIR),
    axial: bool = False,
    grid: render.SagittalGrid | None = None,
    supersample: int = 2,
) -> PhantomStudy:
    """Render, implant and add noise; one Frame of Reference for every series."""
    if not sequences:
        raise ValueError("sequences must name at least one sequence")
    for seq in sequences:
        render.lut(Sequence(seq))
    grid = grid or render.SagittalGrid()
    place = render.Placement(fov_si_mm=grid.rows * grid.pixel_mm, fov_ap_mm=grid.cols * grid.pixel_mm)
    spine = render.default_spine(grid, place)
    tissue, labels = render.sagittal_tissue(spine, grid, supersample)
    tex = render.texture(tissue, rng, supersample)
    bias = render.bias_field(labels.shape, 2, grid.pixel_mm, rng)
    clean = {Sequence(q): render.contrast(tissue, Sequence(q), tex, supersample) * bias for q in sequences}
    result = implant(clean, labels, grid.spacing_kji, spec, rng)
    sigma = 0.012 * float(render.lut(Sequence.T1)[render.Tissue.FAT])
    origin, direction = grid.geometry(place)
    geometry = Volume(result.labels, (grid.pixel_mm, grid.pixel_mm, grid.slice_mm), origin, direction)
    series = [
        sagittal_series(
            q, render.add_noise(render.blur(result.images[q]), sigma, rng), geometry, _DESCRIPTIONS[q]
        )
        for q in clean
    ]
    if axial:
        ref = Sequence.T2 if Sequence.T2 in clean else next(iter(clean))
        ratio = np.where(
            result.lesion_mask > 0, np.clip(result.images[ref] / np.maximum(clean[ref], 1.0), 0.25, 4.0), 1.0
        )
        series.append(_axial_t2(spine, grid, place, geometry, ratio, sigma, rng))
    truth = {
        **result.truth_dict(),
        "generator": "lumbar-sentinel phantom",
        "spec": _spec_dict(spec),
    }
    return PhantomStudy(tuple(series), geometry, truth, geometry.with_array(result.lesion_mask))


def _axial_t2(
    spine: Any,
    grid: render.SagittalGrid,
    place: render.Placement,
    sag: Volume,
    ratio: npt.NDArray[np.float64],
    sigma: float,
    rng: np.random.Generator,
) -> ImageSeries:
    """Axial T2 from L3 to S1; implanted lesions carried over from the sagittal T2 signal ratio."""
    l3, s1 = spine.segment("L3"), spine.segment("S1")
    a_lo, a_hi = 0.5 * (l3.a0 + l3.a1), s1.a0 + 4.0
    idx = [int(np.argmin(np.abs(spine.curve_a - a))) for a in (a_lo, a_hi)]
    y_lo, y_hi = spine.curve_y[idx[0]], spine.curve_y[idx[1]]
    step = 4.0
    ys = np.arange(y_lo, y_hi, step)
    z_lps = tuple(float(place.to_lps(np.array(0.0), np.array(y), np.array(0.0))[2]) for y in ys)
    ax_grid = render.AxialGrid(z_lps=z_lps, slice_mm=step)
    slices, positions = [], []
    for n in range(len(z_lps)):
        tissue = render.axial_tissue(spine, ax_grid, place, n)
        tex = render.texture(tissue, rng)
        bias = render.bias_field(tissue.shape, 0, ax_grid.pixel_mm, rng)
        signal = render.contrast(tissue, Sequence.T2, tex) * bias
        ox, oy, oz = ax_grid.origin(n)
        cc, rr = np.meshgrid(np.arange(ax_grid.cols), np.arange(ax_grid.rows))
        pts = np.stack(
            [ox + cc * ax_grid.pixel_mm, oy + rr * ax_grid.pixel_mm, np.full(cc.shape, oz)], axis=-1
        )
        ijk = sag.lps_to_index(pts)
        coords = np.stack([ijk[..., 2], ijk[..., 1], ijk[..., 0]])
        signal = signal * ndimage.map_coordinates(ratio, coords, order=0, mode="constant", cval=1.0)
        slices.append(render.add_noise(render.blur(signal), sigma, rng))
        positions.append((ox, oy, oz))
    return ImageSeries(
        sequence=Sequence.T2,
        plane=Plane.AXIAL,
        pixels=np.stack(slices),
        positions=tuple(positions),
        orientation=AXIAL_ORIENTATION,
        pixel_spacing=(ax_grid.pixel_mm, ax_grid.pixel_mm),
        slice_thickness=step,
        slice_spacing=step,
        description="AX T2 TSE L3-S1",
    )


def _spec_dict(spec: ImplantSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "lesions": [
            {k: str(v) if hasattr(v, "value") else v for k, v in asdict(les).items()} for les in spec.lesions
        ],
        "fractures": [
            {k: str(v) if hasattr(v, "value") else v for k, v in asdict(f).items()} for f in spec.fractures
        ],
    }
