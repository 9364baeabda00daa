"""Frozen results of the sign assessment, one per vertebral level."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.results import SignState
from analysis.volume import Volume


@dataclass(frozen=True, eq=False)
class LevelSigns:
    """Every sign of malignancy at one level, with the measurements behind it.

    ``reasons`` says, in plain words, why a sign is indeterminate (or what made
    it present); ``lesion_mask`` is on the label map's grid (None when no lesion).
    """

    level: str
    label: int
    # marrow infiltration and its parts
    marrow_infiltration: SignState
    marrow_t1: SignState  # Carroll: T1 iso/hypointense to disc or muscle
    marrow_fluid: SignState  # T2/STIR hyperintense to the body's normal marrow
    enhancement: SignState  # pre/post contrast T1
    marrow_pattern: str | None  # "focal", "diffuse" or None when no lesion
    lesion_fraction_pct: float | None
    lesion_count: int
    t1_marrow_disc_ratio: float | None
    t1_marrow_muscle_ratio: float | None
    pedicle_involvement: SignState
    # the rest of the five signs
    cortical_destruction: SignState
    soft_tissue_extension: SignState
    ste_locations: tuple[str, ...]  # "epidural", "paravertebral"
    ste_volume_ml: float | None
    ste_extent_mm: float | None
    compression_fracture: SignState
    pathologic_fracture_pattern: SignState
    fracture_features: tuple[str, ...]  # malignant:/benign: features seen
    canal_diameter_mm: float | None
    canal_compromise: SignState  # epidural lesion tissue in the canal (Bilsky 1a or more)
    canal_narrowed: bool  # ... and the diameter below normal limits or its neighbours
    suspicious_for_malignancy: SignState
    # measurements handed through from the segmentation
    genant_grade: int | None
    height_loss_pct: float | None
    ha_mm: float | None
    hm_mm: float | None
    hp_mm: float | None
    reasons: tuple[str, ...] = ()
    lesion_mask: Volume | None = None
    # the body read as replaced from its STIR/T1 quotient against the study's other bodies (its T1
    # marrow/disc ratio may then be over 1 and reads like normal marrow); None otherwise
    marrow_stir_t1_quotient: float | None = None
    # the quotient is a focus's against its body's own marrow, not the body's against the study's
    marrow_quotient_focal: bool = False
