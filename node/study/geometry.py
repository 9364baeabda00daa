"""Can a set of frames form one regular 3-D grid, and which? Header facts only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node.study.errors import SeriesError
from node.study.frames import FrameHeader


@dataclass(frozen=True)
class GeometryTolerance:
    """How far real headers may stray from a perfect grid before we refuse them.

    Scanners round positions and direction cosines when writing them as text, so
    exact equality would reject good series; these bounds are far below a voxel.
    """

    orientation: float = 1e-3  # max abs difference of direction cosines between frames
    spacing: float = 0.02  # max deviation of a gap from the mean gap, as a fraction of it
    spacing_mm: float = 0.01  # ... or this many mm, whichever is larger
    duplicate_mm: float = 0.01  # positions closer than this along the normal are one position
    in_plane: float = 0.1  # max drift of a slice across the plane, as a fraction of a pixel
    cosines: float = 1e-2  # max departure of Image Orientation from unit, orthogonal vectors

    def __post_init__(self) -> None:
        for name in ("orientation", "spacing", "spacing_mm", "duplicate_mm", "in_plane", "cosines"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"tolerance.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class StackGeometry:
    """The grid the frames form: frames in slice order and the ITK-style geometry."""

    order: tuple[int, ...]  # indices into the frames given, by increasing position along the normal
    shape: tuple[int, int, int]  # (k, j, i) = (slices, rows, columns)
    spacing: tuple[float, float, float]  # (i, j, k) mm
    origin: tuple[float, float, float]  # LPS mm of voxel [0, 0, 0]
    direction: tuple[float, ...]  # row-major 3x3; columns: row direction, column direction, normal


def orthonormal_axes(
    orientation: Sequence[float], tolerance: float = 1e-2
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Row direction, column direction and slice normal of an Image Orientation (Patient).

    The small rounding of stored cosines is removed (Gram-Schmidt) so the
    direction matrix is orthonormal as :class:`analysis.volume.Volume` requires.
    """
    values = np.asarray(orientation, dtype=float)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        raise SeriesError(f"Image Orientation (Patient) must be 6 finite numbers, got {orientation!r}")
    row, col = values[:3], values[3:]
    if (
        abs(np.linalg.norm(row) - 1) > tolerance
        or abs(np.linalg.norm(col) - 1) > tolerance
        or abs(float(row @ col)) > tolerance
    ):
        raise SeriesError(f"Image Orientation (Patient) {tuple(values)} is not two orthogonal unit vectors")
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def stack_geometry(
    frames: Sequence[FrameHeader], tolerance: GeometryTolerance | None = None
) -> StackGeometry:
    """Check that ``frames`` form one evenly spaced stack and return its geometry.

    Raises :class:`SeriesError` naming the first reason it cannot.
    """
    tol = tolerance or GeometryTolerance()
    if len(frames) < 2:
        raise SeriesError(f"a volume needs at least 2 slices, the series has {len(frames)}")
    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        raise SeriesError(f"mixed image sizes (rows, columns): {sorted(sizes)}")
    spacings = np.array([f.pixel_spacing for f in frames])
    if np.ptp(spacings, axis=0).max() > 1e-3 * spacings.min():
        raise SeriesError(f"mixed pixel spacings: {sorted({f.pixel_spacing for f in frames})}")
    orientations = np.array([f.orientation for f in frames])
    if np.abs(orientations - orientations[0]).max() > tol.orientation:
        distinct = sorted({tuple(round(v, 4) for v in f.orientation) for f in frames})
        raise SeriesError(f"mixed orientations: {len(distinct)} different Image Orientation (Patient) values")
    row, col, normal = orthonormal_axes(orientations.mean(axis=0), tol.cosines)

    positions = np.array([f.position for f in frames])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    gaps = np.diff(along)
    close = gaps < tol.duplicate_mm
    if close.any():
        # runs of near-zero gaps: each run is one position held by (run length + 1) frames
        edges = np.diff(np.concatenate(([0], close.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        first = positions[starts[0]]
        raise SeriesError(
            f"duplicate positions: {starts.size} slice position(s) hold more than one frame "
            f"(up to {int((ends - starts).max()) + 1}; e.g. {tuple(round(float(v), 3) for v in first)}); "
            "several echoes, stacks or repeats in one series"
        )
    spacing_k = float((along[-1] - along[0]) / (len(along) - 1))
    step = float(np.median(gaps))
    allowed = max(tol.spacing * step, tol.spacing_mm)
    if np.abs(gaps - step).max() > allowed:
        worst = int(np.argmax(np.abs(gaps - step)))
        ratio = gaps[worst] / step
        if round(ratio) >= 2 and abs(ratio - round(ratio)) * step <= allowed:
            raise SeriesError(
                f"missing positions: gap of {gaps[worst]:.3f} mm after slice {worst} where the "
                f"slice spacing is {step:.3f} mm ({round(ratio) - 1} slice(s) missing)"
            )
        raise SeriesError(
            f"uneven slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm "
            f"(tolerance {allowed:.3f} mm around {step:.3f} mm)"
        )
    expected = positions[0] + np.outer(along - along[0], normal)
    drift = np.linalg.norm(positions - expected, axis=1).max()
    if drift > max(tol.in_plane * float(spacings.min()), tol.spacing_mm):
        raise SeriesError(
            f"slice positions drift {drift:.3f} mm across the image plane (sheared stack, e.g. gantry tilt)"
        )
    direction = np.column_stack([row, col, normal])
    first = frames[int(order[0])]
    return StackGeometry(
        order=tuple(int(i) for i in order),
        shape=(len(frames), first.rows, first.columns),
        # Pixel Spacing is (between rows, between columns): j first, then i.
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], spacing_k),
        origin=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        direction=tuple(float(v) for v in direction.ravel()),
    )
