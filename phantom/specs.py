"""Specifications and ground truth of implanted abnormalities (see ``implants``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis.volume import Sequence

PRESENT, ABSENT = "present", "absent"
# Fractional height loss drawn for each Genant grade, inside the grade's band.
GRADE_LOSS = {1: (0.215, 0.235), 2: (0.29, 0.36), 3: (0.45, 0.52)}


class LesionKind(StrEnum):
    FOCAL = "focal"
    DIFFUSE = "diffuse"


class Extension(StrEnum):
    NONE = "none"
    PARAVERTEBRAL = "paravertebral"  # anterior, through the anterior cortex
    EPIDURAL = "epidural"  # posterior, into the canal


class FractureShape(StrEnum):
    WEDGE = "wedge"
    BICONCAVE = "biconcave"
    CRUSH = "crush"


class FracturePattern(StrEnum):
    BENIGN = "benign"
    MALIGNANT = "malignant"


@dataclass(frozen=True)
class LesionSpec:
    """A marrow lesion in body ``label``; an extension also breaks the cortex."""

    label: int
    kind: LesionKind = LesionKind.FOCAL
    extension: Extension = Extension.NONE
    radius_mm: float | None = None  # focal size; default 22-38 % of the body's AP depth
    extension_mm: float | None = None  # soft-tissue depth outside the body; default 5-8 mm
    pedicles: bool = False
    enhancing: bool = True
    # 1: the tumour's full signal; smaller: that far from the body's own marrow towards it
    # on every sequence (a faint lesion); the development data's faint lesions (issue 19)
    conspicuity: float = 1.0
    # a paravertebral extension through the body's side wall (beside the body, on the sagittal
    # slices past its edge) instead of its front; metastases sit in the body's posterolateral
    # part more often than in its middle
    lateral: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.label, int | np.integer) or self.label <= 0:
            raise ValueError(f"label must be a positive int, got {self.label!r}")
        if not 0.0 < self.conspicuity <= 1.0:
            raise ValueError(f"conspicuity must be in (0, 1], got {self.conspicuity!r}")
        object.__setattr__(self, "kind", LesionKind(self.kind))
        object.__setattr__(self, "extension", Extension(self.extension))
        if self.lateral and self.extension != Extension.PARAVERTEBRAL:
            raise ValueError(f"lateral needs a paravertebral extension, got {self.extension.value!r}")


@dataclass(frozen=True)
class FractureSpec:
    """A compression fracture of Genant ``grade`` 1-3 in body ``label``.

    Benign: marrow kept, band-like low-T1 line under the endplate, retropulsed
    posterosuperior fragment (``retropulsion_mm``, default 3), optional fluid
    sign. Malignant: marrow replaced, convex posterior border, pedicles.
    """

    label: int
    grade: int
    shape: FractureShape = FractureShape.WEDGE
    pattern: FracturePattern = FracturePattern.BENIGN
    fluid_sign: bool = False
    retropulsion_mm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, int | np.integer) or self.label <= 0:
            raise ValueError(f"label must be a positive int, got {self.label!r}")
        if self.grade not in GRADE_LOSS:
            raise ValueError(f"grade must be 1, 2 or 3, got {self.grade!r}")
        object.__setattr__(self, "shape", FractureShape(self.shape))
        object.__setattr__(self, "pattern", FracturePattern(self.pattern))
        if self.retropulsion_mm is not None and self.retropulsion_mm < 0:
            raise ValueError(f"retropulsion_mm must be >= 0, got {self.retropulsion_mm}")


@dataclass(frozen=True)
class ImplantSpec:
    lesions: tuple[LesionSpec, ...] = ()
    fractures: tuple[FractureSpec, ...] = ()

    def __post_init__(self) -> None:
        labels = [f.label for f in self.fractures]
        if len(set(labels)) != len(labels):
            raise ValueError(f"fractures: at most one per level, got labels {labels}")


@dataclass(frozen=True)
class LevelTruth:
    label: int
    level: str
    marrow_infiltration: str = ABSENT
    cortical_destruction: str = ABSENT
    soft_tissue_extension: str = ABSENT
    compression_fracture: str = ABSENT
    pathologic_fracture_pattern: str = ABSENT
    suspicious_for_malignancy: str = ABSENT
    genant_grade: int = 0
    height_loss_pct: float = 0.0
    lesion_fraction_pct: float = 0.0
    pedicle_involvement: str = ABSENT
    canal_compromise: str = ABSENT


@dataclass(frozen=True)
class StudyTruth:
    suspicious_for_malignancy: str
    suspicious_level_count: int
    multiple_lesions: str
    canal_compromise: str


@dataclass(frozen=True)
class LesionTruth:
    id: int
    label: int
    level: str
    kind: str  # focal, diffuse
    extension: str
    voxels: int


@dataclass(frozen=True)
class ImplantResult:
    images: dict[Sequence, np.ndarray]
    labels: np.ndarray
    lesion_mask: npt.NDArray[np.int32]
    lesions: tuple[LesionTruth, ...]
    levels: tuple[LevelTruth, ...]
    study: StudyTruth

    def level(self, name_or_label: str | int) -> LevelTruth:
        for lv in self.levels:
            if name_or_label in (lv.level, lv.label):
                return lv
        raise KeyError(name_or_label)

    def truth_dict(self) -> dict[str, Any]:
        return {
            "levels": [asdict(lv) for lv in self.levels],
            "study": asdict(self.study),
            "lesions": [asdict(les) for les in self.lesions],
        }


def genant_grade(height_loss_pct: float) -> int:
    if height_loss_pct < 20.0:
        return 0
    if height_loss_pct <= 25.0:
        return 1
    return 2 if height_loss_pct <= 40.0 else 3
