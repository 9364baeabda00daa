"""Frozen result types passed between the analysis steps.

Segmentation (``analysis.vertebrae``) produces :class:`SpineSegmentation`;
the signs (``analysis.signs``) consume it and produce :class:`LevelSigns`;
``analysis.findings`` sums them up in the shape of the results contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from analysis.volume import Volume


class SignState(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class BodyMeasurement:
    """Size and shape of one vertebral body, on its mid-sagittal plane."""

    level: str
    label: int  # VerSe label in the label map
    centroid_lps: tuple[float, float, float]
    ha_mm: float | None
    hm_mm: float | None
    hp_mm: float | None
    expected_height_mm: float | None  # from the neighbours
    height_loss_pct: float | None
    genant_grade: int | None
    volume_ml: float


@dataclass(frozen=True)
class SpineSegmentation:
    """Every vertebral body found in one sagittal series, named and measured.

    ``labels`` is on the grid of the series it was drawn on, VerSe labels
    (T12=19, L1..L5=20..24, S1=26), 0 elsewhere.
    """

    labels: Volume
    bodies: tuple[BodyMeasurement, ...]
    labelling_certainty: float  # 0..1
    sacrum_in_view: bool
    notes: tuple[str, ...] = ()  # transitional anatomy, field-of-view limits...
    # the same bodies with the notch a marrow lesion cut into an outline given back, on the
    # grid of ``labels``: the signs look for lesions in these (None: in ``labels``)
    outlines: Volume | None = None

    def body(self, level: str) -> BodyMeasurement | None:
        return next((b for b in self.bodies if b.level == level), None)
