"""The volume and level types every analysis step shares."""

from __future__ import annotations

from collections.abc import Sequence as Sequence_
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Sequence(StrEnum):
    """MR contrast of a series, decided from its acquisition parameters."""

    T1 = "T1"
    T2 = "T2"
    STIR = "STIR"
    T1C = "T1C"  # post-contrast T1
    DIXON = "DIXON"
    OTHER = "OTHER"


class Plane(StrEnum):
    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"
    OBLIQUE = "oblique"


# VerSe label convention used by vertebrae.nii.gz and the shared data.
LEVEL_LABELS: dict[str, int] = {
    "T11": 18,
    "T12": 19,
    "L1": 20,
    "L2": 21,
    "L3": 22,
    "L4": 23,
    "L5": 24,
    "S1": 26,
}
LABEL_LEVELS: dict[int, str] = {v: k for k, v in LEVEL_LABELS.items()}
# Levels the product reports, top to bottom.
REPORTED_LEVELS: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _as_tuple3(name: str, value: tuple[float, ...] | npt.ArrayLike) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image with its patient geometry (DICOM LPS, ITK conventions).

    ``array`` is indexed ``[k, j, i]`` (slice, row, column) exactly as
    ``SimpleITK.GetArrayFromImage`` returns it. ``spacing``, ``origin`` and the
    columns of ``direction`` are given for the axes ``(i, j, k)``; the origin
    is the LPS position in mm of the centre of voxel ``[0, 0, 0]``.
    """

    array: npt.NDArray[np.generic]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self) -> None:
        if not isinstance(self.array, np.ndarray):
            raise TypeError(f"array must be a numpy array, got {type(self.array).__name__}")
        if self.array.ndim != 3:
            raise ValueError(f"array must be 3-D, got shape {self.array.shape}")
        spacing = _as_tuple3("spacing", self.spacing)
        if min(spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {spacing}")
        direction = np.asarray(self.direction, dtype=float).ravel()
        if direction.shape != (9,):
            raise ValueError(f"direction must have 9 elements, got {len(direction)}")
        if not np.allclose(direction.reshape(3, 3) @ direction.reshape(3, 3).T, np.eye(3), atol=1e-4):
            raise ValueError("direction must be an orthonormal 3x3 matrix")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _as_tuple3("origin", self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in direction))

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Voxel size along the array's ``(k, j, i)`` axes (``spacing`` is given along ``(i, j, k)``)."""
        i, j, k = self.spacing
        return (k, j, i)

    @property
    def direction_matrix(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_lps(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS mm of continuous index ``(i, j, k)`` points (shape (..., 3))."""
        idx = np.asarray(ijk, dtype=float)
        scaled = idx * np.asarray(self.spacing)
        return np.asarray(self.origin) + scaled @ self.direction_matrix.T

    def lps_to_index(self, lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous ``(i, j, k)`` index of LPS mm points (shape (..., 3))."""
        rel = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        return (rel @ self.direction_matrix) / np.asarray(self.spacing)

    def same_grid(self, other: Volume, *, atol_mm: float = 1e-3) -> bool:
        """True when ``other`` has this volume's voxel grid (shape, spacing, origin, direction)."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=atol_mm)
            and np.allclose(self.origin, other.origin, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def content_box(self) -> tuple[slice, slice, slice]:
        """The ``[k, j, i]`` box outside which every voxel holds the volume's lowest value.

        A scanner or an export that fills the border of a larger matrix writes
        one constant there: that border is not image. The whole volume when
        every voxel is the same.
        """
        inside = self.array != self.array.min()
        box = []
        for axis, size in enumerate(self.array.shape):
            found = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append(slice(int(found[0]), int(found[-1]) + 1) if found.size else slice(0, size))
        return box[0], box[1], box[2]

    def crop(self, box: tuple[slice, slice, slice]) -> Volume:
        """The part of the volume in the ``[k, j, i]`` index ``box`` (steps of 1), in the same place."""
        starts = []
        for axis, part in enumerate(box):
            start, stop, step = part.indices(self.array.shape[axis])
            if step != 1 or stop <= start:
                raise ValueError(f"box[{axis}] must be a non-empty slice with step 1, got {part!r}")
            starts.append(start)
        k, j, i = starts
        return Volume(self.array[box], self.spacing, tuple(self.index_to_lps((i, j, k))), self.direction)

    def with_array(self, array: npt.NDArray[np.generic]) -> Volume:
        """Same geometry, other voxels (a mask or a filtered image)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)


def content_box_of(volumes: Sequence_[Volume]) -> tuple[slice, slice, slice]:
    """The smallest ``[k, j, i]`` box holding the image (:meth:`Volume.content_box`) of every volume.

    The volumes share one grid; cropped to this box, none of them loses a row of its image.
    """
    if not volumes:
        raise ValueError("volumes must not be empty")
    shape = volumes[0].array.shape
    if any(vol.array.shape != shape for vol in volumes):
        shapes = sorted({vol.array.shape for vol in volumes})
        raise ValueError(f"volumes must share one grid, got shapes {shapes}")
    boxes = [vol.content_box() for vol in volumes]
    k, j, i = (slice(min(box[axis].start for box in boxes), max(box[axis].stop for box in boxes))
               for axis in range(3))
    return k, j, i
