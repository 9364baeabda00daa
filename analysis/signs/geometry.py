"""Canonical anatomical frame for the sign measurements.

Every sign works on arrays reoriented to one frame, so that "superior",
"posterior" and "lateral" mean the same array axis whatever the series'
orientation: axis 0 runs left-right (either sense), axis 1 superior to
inferior, axis 2 anterior to posterior. Only the label map's geometry decides
the transform, and every sequence must share that grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence, Volume

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Frame:
    """How to carry a ``[k, j, i]`` array into the canonical (LR, SI, AP) frame."""

    order: tuple[int, int, int]  # source array axis for canonical LR, SI, AP
    flip: tuple[bool, bool, bool]  # reverse that canonical axis after transposing
    spacing: tuple[float, float, float]  # mm along canonical LR, SI, AP

    def to_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        out = np.transpose(array, self.order)
        for axis, flip in enumerate(self.flip):
            if flip:
                out = np.flip(out, axis=axis)
        return np.ascontiguousarray(out)

    def from_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """The inverse of :meth:`to_canonical`: back to the series' ``[k, j, i]`` order."""
        out = array
        for axis, flip in enumerate(self.flip):
            if flip:
                out = np.flip(out, axis=axis)
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.order)))

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.spacing))


def frame_of(volume: Volume) -> Frame:
    """The canonical frame of ``volume`` from its direction cosines."""
    direction = volume.direction_matrix  # rows: LPS x, y, z; columns: index axes i, j, k
    # array axis a holds index axis 2 - a
    used: set[int] = set()
    order: list[int] = []
    flip: list[bool] = []
    for lps_row, positive_means_canonical_increase in ((0, True), (2, False), (1, True)):
        # canonical LR: +x (left) increasing; SI: index increasing inferior (-z); AP: +y (posterior)
        weights = [abs(direction[lps_row, 2 - a]) if a not in used else -1.0 for a in range(3)]
        axis = int(np.argmax(weights))
        used.add(axis)
        sign = direction[lps_row, 2 - axis]
        order.append(axis)
        flip.append(bool((sign > 0) != positive_means_canonical_increase))
    spacing_ijk = volume.spacing
    spacing = tuple(float(spacing_ijk[2 - a]) for a in order)
    return Frame(order=(order[0], order[1], order[2]), flip=(flip[0], flip[1], flip[2]),
                 spacing=(spacing[0], spacing[1], spacing[2]))


def canonical_images(
    volumes: Mapping[Sequence, Volume],
    labels: Volume,
    frame: Frame,
    region: tuple[slice, slice, slice] | None = None,
) -> dict[Sequence, FloatArray]:
    """Each sequence as float in the canonical frame, lightly denoised.

    A 3x3 in-plane median removes the speckle that would otherwise make single
    voxels cross a threshold; it does not smooth across the thick slices.
    Only ``region`` (canonical slices) is filtered when given, to save time.
    """
    out: dict[Sequence, FloatArray] = {}
    for seq, vol in volumes.items():
        if not isinstance(vol, Volume):
            raise TypeError(f"volumes[{seq!r}] must be a Volume, got {type(vol).__name__}")
        if not vol.same_grid(labels, atol_mm=1e-2):
            raise ValueError(
                f"volumes[{seq!r}] is not on the label map's grid; resample it first "
                "(analysis.sitk_adapter) before assessing signs"
            )
        arr = np.asarray(frame.to_canonical(np.asarray(vol.array, dtype=np.float64)), dtype=np.float64)
        box = arr[region] if region is not None else arr
        box[...] = ndimage.median_filter(box, size=(1, 3, 3))
        out[seq] = arr
    return out


def inner_distance_mm(mask: BoolArray, spacing: tuple[float, float, float]) -> FloatArray:
    """Distance (mm) of each voxel of ``mask`` to the nearest voxel outside it."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float64)
    padded = np.pad(mask, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded, sampling=spacing)
    return np.asarray(dist, dtype=np.float64)[1:-1, 1:-1, 1:-1]


def outer_distance_mm(mask: BoolArray, spacing: tuple[float, float, float]) -> FloatArray:
    """Distance (mm) of each voxel outside ``mask`` to the mask (0 inside)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return np.asarray(ndimage.distance_transform_edt(~mask, sampling=spacing), dtype=np.float64)


def mid_sagittal_index(mask: BoolArray) -> int:
    """The LR slice nearest the centre of ``mask`` (its mid-sagittal slice)."""
    counts = mask.sum(axis=(1, 2)).astype(float)
    centre = float((np.arange(counts.size) * counts).sum() / max(counts.sum(), 1.0))
    return int(np.clip(np.floor(centre + 0.5), 0, counts.size - 1))


def components(mask: BoolArray, min_voxels: int) -> list[BoolArray]:
    """26-connected components of ``mask`` with at least ``min_voxels`` voxels, largest first."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    keep = [i + 1 for i in np.argsort(sizes)[::-1] if sizes[i] >= min_voxels]
    return [lab == i for i in keep]
