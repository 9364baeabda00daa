"""Canonical sagittal layout: array axes (left-right, superior->inferior, anterior->posterior).

Scanners store sagittal series in any index order (the shared NIfTI files keep
slices on ``k``, the SCT volume keeps them on ``i``). Every step of the vertebra
analysis works on one layout so that it does not care: axis 0 runs toward the
patient's left, axis 1 toward the feet, axis 2 toward the back. The mapping is
a permutation plus flips, so it is exact and invertible (no resampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.volume import Volume

# LPS component (0 = L, 1 = P, 2 = S) and the sign that counts as "increasing"
# for each canonical axis: left, inferior (-S), posterior.
_CANONICAL_LPS: tuple[tuple[int, float], ...] = ((0, 1.0), (2, -1.0), (1, 1.0))


@dataclass(frozen=True)
class Canonical:
    """How to go from a volume's array to the canonical layout and back."""

    # canonical axis a takes array axis perm[a] (array axes are k, j, i).
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]  # flip after permuting
    spacing: tuple[float, float, float]  # mm along canonical axes (LR, SI, AP)
    shape: tuple[int, int, int]  # canonical shape

    def to_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        out = np.transpose(array, self.perm)
        for axis, f in enumerate(self.flip):
            if f:
                out = np.flip(out, axis=axis)
        return np.ascontiguousarray(out)

    def from_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        if array.shape != self.shape:
            raise ValueError(f"array shape {array.shape} is not the canonical shape {self.shape}")
        out = array
        for axis, f in enumerate(self.flip):
            if f:
                out = np.flip(out, axis=axis)
        inverse = tuple(int(v) for v in np.argsort(self.perm))
        return np.ascontiguousarray(np.transpose(out, inverse))


def canonical_of(volume: Volume) -> Canonical:
    """The canonical layout of ``volume``; raises if the series is not sagittal."""
    if not isinstance(volume, Volume):
        raise TypeError(f"volume must be a Volume, got {type(volume).__name__}")
    d = volume.direction_matrix  # columns: LPS direction of index axes i, j, k
    # array axis for index axis: i -> 2, j -> 1, k -> 0
    array_axis_of_index = (2, 1, 0)
    used: set[int] = set()
    perm: list[int] = []
    flip: list[bool] = []
    spacing: list[float] = []
    for lps, sign in _CANONICAL_LPS:
        weights = np.abs(d[lps, :])
        index_axis = int(np.argmax(weights))
        if index_axis in used or weights[index_axis] < 0.5:
            raise ValueError("volume is too oblique to map onto patient axes")
        used.add(index_axis)
        perm.append(array_axis_of_index[index_axis])
        flip.append(bool(d[lps, index_axis] * sign < 0))
        spacing.append(float(volume.spacing[index_axis]))
    shape = tuple(int(volume.array.shape[p]) for p in perm)
    if spacing[0] < max(spacing[1], spacing[2]) * 0.99 and shape[0] > min(shape[1], shape[2]):
        raise ValueError("volume does not look sagittal: the left-right axis is the finest and longest")
    return Canonical(
        perm=(perm[0], perm[1], perm[2]),
        flip=(flip[0], flip[1], flip[2]),
        spacing=(spacing[0], spacing[1], spacing[2]),
        shape=(shape[0], shape[1], shape[2]),
    )


def canonical_to_lps(volume: Volume, canonical: Canonical, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """LPS mm of continuous canonical indices (shape (..., 3))."""
    pts = np.asarray(points, dtype=float)
    array_idx = np.empty_like(pts)
    for axis in range(3):
        coord = pts[..., axis]
        if canonical.flip[axis]:
            coord = canonical.shape[axis] - 1 - coord
        array_idx[..., canonical.perm[axis]] = coord
    ijk = array_idx[..., ::-1]
    return volume.index_to_lps(ijk)
