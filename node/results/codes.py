"""Every code the result objects use: the contract's private scheme 99LSENT and standard codes.

Standard codes come from ``pydicom.sr.codedict.codes``; the private scheme
99LSENT holds what the DICOM standard has no code for (results contract).
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from analysis.results import SignState

PRIVATE_SCHEME = "99LSENT"
PRIVATE_SCHEME_NAME = "Lumbar Sentinel private codes"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


# Qualitative evaluations (CODE items), per level and for the study.
MARROW = _private("MARROW", "Marrow infiltration")
CORTEX = _private("CORTEX", "Cortical destruction")
STE = _private("STE", "Soft tissue extension")
VCF = _private("VCF", "Vertebral compression fracture")
PATHFX = _private("PATHFX", "Pathologic fracture pattern")
SUSPMAL = _private("SUSPMAL", "Suspicious for malignancy")
MULTI = _private("MULTI", "Multiple lesions")
CANAL = _private("CANAL", "Spinal canal compromise")

# Numeric measurements (NUM items).
HA = _private("HA", "Anterior vertebral body height")
HM = _private("HM", "Middle vertebral body height")
HP = _private("HP", "Posterior vertebral body height")
HLOSS = _private("HLOSS", "Vertebral body height loss")
GENANT = _private("GENANT", "Genant grade")
LESFRAC = _private("LESFRAC", "Fraction of vertebral body involved")
T1MD = _private("T1MD", "T1 marrow to disc signal ratio")
NSUSP = _private("NSUSP", "Number of suspicious levels")

PRIVATE_CODES: tuple[Code, ...] = (
    MARROW, CORTEX, STE, VCF, PATHFX, SUSPMAL, MULTI, CANAL,
    HA, HM, HP, HLOSS, GENANT, LESFRAC, T1MD, NSUSP,
)

STATE_CODES: dict[SignState, Code] = {
    SignState.PRESENT: codes.SCT.Present,
    SignState.ABSENT: codes.SCT.Absent,
    SignState.INDETERMINATE: codes.SCT.Indeterminate,
}

# UCUM units; "{grade}" and "{levels}" are UCUM annotations (dimensionless counts).
MILLIMETER = codes.UCUM.Millimeter
PERCENT = codes.UCUM.Percent
NO_UNITS = codes.UCUM.NoUnits
GRADE_UNIT = Code("{grade}", "UCUM", "grade")
LEVELS_UNIT = Code("{levels}", "UCUM", "levels")

# The finding site of each level (results contract); T11 only names a SEG segment.
LEVEL_SITES: dict[str, Code] = {
    "T11": codes.SCT.T11Vertebra,
    "T12": codes.SCT.T12Vertebra,
    "L1": codes.SCT.L1Vertebra,
    "L2": codes.SCT.L2Vertebra,
    "L3": codes.SCT.L3Vertebra,
    "L4": codes.SCT.L4Vertebra,
    "L5": codes.SCT.L5Vertebra,
    "S1": codes.SCT.Sacrum,
}
STUDY_SITE = codes.SCT.LumbarSpine
STUDY_TRACKING_ID = "Study"

# SEG segment properties (CID 7150 categories, CID 7151 / 7192 structure types).
BODY_CATEGORY = codes.SCT.AnatomicalStructure
LESION_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
LESION_TYPE = codes.SCT.Lesion

REPORT_TITLE = codes.DCM.ImagingMeasurementReport
PROCEDURE_REPORTED = codes.LN.MRIUnspecifiedBodyRegion
IMPRESSION = codes.DCM.Impression
# TID 1500 row 12 container; pydicom's dictionary has no keyword for it.
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")


def coding_scheme_item() -> CodingSchemeIdentificationItem:
    """The declaration of 99LSENT for the Coding Scheme Identification Sequence."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name=PRIVATE_SCHEME_NAME,
        responsible_organization="Lumbar Sentinel project",
    )


def state_code(state: SignState) -> Code:
    if not isinstance(state, SignState):
        raise TypeError(f"state must be a SignState, got {type(state).__name__}")
    return STATE_CODES[state]


def level_site(level: str) -> Code:
    try:
        return LEVEL_SITES[level]
    except KeyError:
        known = ", ".join(LEVEL_SITES)
        raise ValueError(f"level: no finding site code for {level!r} (known: {known})") from None
