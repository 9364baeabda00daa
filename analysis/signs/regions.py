"""Reference tissues the signal ratios are taken against: discs, muscle, canal.

The vertebrae engine may supply these masks; when it does not, the discs are
derived here from the body label map alone (the tissue between two
consecutive bodies, column by column along the spine axis). Muscle is then
unknown and only the disc reference is used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from analysis.results import SpineSegmentation
from analysis.signs.geometry import BoolArray, Frame, frame_of

# Taller gaps mean a body is missing from the label map, not a disc.
MAX_DISC_HEIGHT_MM = 20.0


@dataclass(frozen=True, eq=False)
class ReferenceRegions:
    """Reference masks on the label map's grid (array order ``[k, j, i]``).

    ``discs`` is keyed ``"<upper>-<lower>"`` by level name, e.g. ``"L3-L4"``.
    """

    discs: Mapping[str, BoolArray] = field(default_factory=dict)
    muscle: BoolArray | None = None
    canal: BoolArray | None = None
    source: str = "derived"
    muscle_by_level: Mapping[str, BoolArray] = field(default_factory=dict)

    def discs_of(self, level: str) -> list[BoolArray]:
        return [m for key, m in self.discs.items() if level in key.split("-")]

    def muscle_of(self, level: str) -> BoolArray | None:
        return self.muscle_by_level.get(level, self.muscle)


class LevelRegionsLike(Protocol):
    """What :func:`analysis.vertebrae.reference_regions` gives per level."""

    @property
    def disc_above(self) -> BoolArray | None: ...
    @property
    def disc_below(self) -> BoolArray | None: ...
    @property
    def muscle(self) -> BoolArray: ...


def regions_from_levels(levels: Mapping[str, LevelRegionsLike]) -> ReferenceRegions:
    """Adapt the vertebrae engine's per-level regions (top to bottom) to ReferenceRegions."""
    if not isinstance(levels, Mapping):
        raise TypeError(f"levels must be a mapping of level name to regions, got {type(levels).__name__}")
    names = list(levels)
    discs: dict[str, BoolArray] = {}
    muscle: dict[str, BoolArray] = {}
    for i, name in enumerate(names):
        reg = levels[name]
        if reg.disc_above is not None:
            discs[f"{names[i - 1] if i > 0 else 'above'}-{name}"] = np.asarray(reg.disc_above, dtype=bool)
        if reg.disc_below is not None and i == len(names) - 1:
            discs[f"{name}-below"] = np.asarray(reg.disc_below, dtype=bool)
        if reg.muscle is not None and np.asarray(reg.muscle).any():
            muscle[name] = np.asarray(reg.muscle, dtype=bool)
    return ReferenceRegions(discs=discs, source="vertebrae", muscle_by_level=muscle)


def ordered_bodies(segmentation: SpineSegmentation, frame: Frame) -> list[tuple[str, int, float]]:
    """(level, label, mean SI index) of each body present, top to bottom."""
    labels = frame.to_canonical(np.asarray(segmentation.labels.array))
    out = []
    for body in segmentation.bodies:
        idx = np.nonzero(labels == body.label)
        if idx[0].size == 0:
            continue
        out.append((body.level, body.label, float(np.mean(idx[1]))))
    return sorted(out, key=lambda t: t[2])


def _disc_between(upper: BoolArray, lower: BoolArray, margin: int, max_gap: int) -> BoolArray:
    """Canonical mask of the voxels between two bodies, columns along SI."""
    n_si = upper.shape[1]
    si = np.arange(n_si)[None, :, None]
    has_u = upper.any(axis=1)
    has_l = lower.any(axis=1)
    u_max = np.where(upper, si, -1).max(axis=1)
    l_min = np.where(lower, si, n_si).min(axis=1)
    both = has_u & has_l & (l_min > u_max) & (l_min - u_max <= max_gap)
    lo = (u_max + 1 + margin)[:, None, :]
    hi = (l_min - 1 - margin)[:, None, :]
    mask = (si >= lo) & (si <= hi) & both[:, None, :]
    return np.asarray(mask, dtype=bool)


def derive_reference_regions(segmentation: SpineSegmentation, margin_voxels: int = 1) -> ReferenceRegions:
    """Disc masks between consecutive labelled bodies (no muscle, no canal)."""
    if not isinstance(segmentation, SpineSegmentation):
        raise TypeError(f"segmentation must be a SpineSegmentation, got {type(segmentation).__name__}")
    frame = frame_of(segmentation.labels)
    labels = frame.to_canonical(np.asarray(segmentation.labels.array))
    order = ordered_bodies(segmentation, frame)
    discs: dict[str, BoolArray] = {}
    for (lev_u, lab_u, _), (lev_l, lab_l, _) in itertools.pairwise(order):
        max_gap = max(2, round(MAX_DISC_HEIGHT_MM / frame.spacing[1]))
        disc = _disc_between(labels == lab_u, labels == lab_l, margin_voxels, max_gap)
        disc &= labels == 0
        if disc.any():
            discs[f"{lev_u}-{lev_l}"] = np.asarray(frame.from_canonical(disc), dtype=bool)
    return ReferenceRegions(discs=discs, source="derived")

