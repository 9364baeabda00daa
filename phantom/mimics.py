"""Benign marrow that looks like tumour on one sequence: the development data's mimics.

Three findings every spine radiologist meets and must not call infiltration:

- a typical **haemangioma**: bright on T1 (its fat) and on T2 and STIR (its vessels);
- a **fat island**: bright on T1 and T2, dark on STIR (fat is suppressed);
- **patchy red marrow** (reconversion): islands a little darker than fatty marrow on T1 and a
  little brighter on STIR, but never darker than disc on T1 (Carroll's rule is why
  radiologists accept it).

``paint_mimics(images, labels, spacing_kji, specs, rng)`` paints each :class:`MimicSpec` into
its body and returns new images (same keys and dtypes); the truth of such a study is "no lesion".
Every signal is a multiple of the body's own marrow and its discs, measured in the same image,
as in :mod:`phantom.implants`. Sequences other than T1, T2 and STIR are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.volume import Sequence
from phantom._bodyframe import smooth_field
from phantom._signal import as_dtype, references

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class MimicKind(StrEnum):
    HAEMANGIOMA = "haemangioma"
    FAT_ISLAND = "fat_island"
    RED_MARROW = "red_marrow"


# Signal against the body's own marrow, drawn uniformly in these ranges per mimic (T1, T2, STIR).
# Haemangioma and fat island: Ross & Moore, Diagnostic Imaging: Spine; red marrow: Vande Berg,
# Radiology 1998 (mildly hypointense to fat on T1, mildly hyperintense on STIR).
_SIGNAL: dict[MimicKind, dict[Sequence, tuple[float, float]]] = {
    MimicKind.HAEMANGIOMA: {Sequence.T1: (1.15, 1.4), Sequence.T2: (1.3, 1.8), Sequence.STIR: (1.6, 2.6)},
    MimicKind.FAT_ISLAND: {Sequence.T1: (1.2, 1.5), Sequence.T2: (1.05, 1.3), Sequence.STIR: (0.3, 0.6)},
    MimicKind.RED_MARROW: {Sequence.T1: (0.75, 0.9), Sequence.T2: (0.95, 1.1), Sequence.STIR: (1.1, 1.4)},
}
_RADIUS_MM = {MimicKind.HAEMANGIOMA: (3.0, 8.0), MimicKind.FAT_ISLAND: (2.0, 6.0)}
# red marrow stays brighter than disc on T1 by this share
_RED_T1_OVER_DISC = 1.1
# red marrow islands: the share of the body they take, and their size
_RED_SHARE = (0.15, 0.4)
_RED_PATCH_MM = 3.0


@dataclass(frozen=True)
class MimicSpec:
    """One mimic in body ``label``; ``radius_mm`` for a haemangioma or fat island (drawn if None)."""

    label: int
    kind: MimicKind
    radius_mm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, MimicKind):
            raise TypeError(f"kind must be a MimicKind, got {type(self.kind).__name__}")
        if self.label <= 0:
            raise ValueError(f"label must be a positive body label, got {self.label}")
        if self.radius_mm is not None and self.kind == MimicKind.RED_MARROW:
            raise ValueError("radius_mm applies to a haemangioma or fat island, not to red marrow")
        if self.radius_mm is not None and not 1.0 <= self.radius_mm <= 15.0:
            raise ValueError(f"radius_mm must be within 1-15 mm, got {self.radius_mm}")


def paint_mimics(
    images: Mapping[Sequence, np.ndarray],
    labels: np.ndarray,
    spacing_kji: tuple[float, float, float],
    specs: Seq[MimicSpec],
    rng: np.random.Generator,
) -> dict[Sequence, np.ndarray]:
    """``images`` with every mimic of ``specs`` painted in; labels do not change."""
    shapes = {im.shape for im in images.values()}
    if shapes != {labels.shape}:
        raise ValueError(f"images and labels must share one grid, got {shapes} and {labels.shape}")
    if len(spacing_kji) != 3 or min(spacing_kji) <= 0:
        raise ValueError(f"spacing_kji must be three positive sizes, got {spacing_kji}")
    work = {q: np.asarray(im, dtype=np.float64).copy() for q, im in images.items()}
    for spec in specs:
        body = labels == spec.label
        if int(body.sum()) < 20:
            raise ValueError(f"no body labelled {spec.label} to paint a {spec.kind} into")
        weight = _weight(body, spacing_kji, spec, rng)
        for q, (lo, hi) in _SIGNAL[spec.kind].items():
            if q not in work:
                continue
            ref = references(work[q], labels, spec.label)
            level = ref.marrow * float(rng.uniform(lo, hi))
            if spec.kind == MimicKind.RED_MARROW and q == Sequence.T1:
                level = max(level, _RED_T1_OVER_DISC * ref.disc)
            # the marrow's fat is what a mimic changes: each voxel is shifted by the same amount, so
            # it keeps its texture, and a vein or the cortex in the body stays as far from the
            # marrow as it was (scaling would make a bright vein brighter still)
            work[q] = np.where(body, work[q] + weight * (level - ref.marrow), work[q])
    return {q: as_dtype(work[q], images[q].dtype) for q in images}


def _weight(body: BoolArray, spacing: tuple[float, float, float], spec: MimicSpec,
            rng: np.random.Generator) -> FloatArray:
    """How much of the mimic's signal each voxel of the body takes, 0-1 (soft edges: partial volume)."""
    if spec.kind == MimicKind.RED_MARROW:
        field = smooth_field(body.shape, tuple(_RED_PATCH_MM / s for s in spacing), rng)
        cut = float(np.quantile(field[body], 1.0 - float(rng.uniform(*_RED_SHARE))))
        # islands of red marrow fade in over one standard deviation of the field
        return np.clip(field - cut, 0.0, 1.0) * body
    dist = ndimage.distance_transform_edt(body, sampling=spacing)
    lo, hi = _RADIUS_MM[spec.kind]
    r = spec.radius_mm if spec.radius_mm is not None else float(rng.uniform(lo, hi))
    r = min(r, max(float(dist.max()) - 1.0, 1.0))
    inside = np.argwhere(dist >= r + 0.5)
    if len(inside) == 0:
        inside = np.argwhere(dist >= 0.9 * dist.max())
    centre = inside[rng.integers(len(inside))]
    grid = np.indices(body.shape, dtype=np.float64)
    mm = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True)))
    # one voxel's width of partial volume at the rim, along the coarsest axis
    edge = max(spacing)
    return np.clip((r + edge / 2.0 - mm) / edge, 0.0, 1.0) * body

