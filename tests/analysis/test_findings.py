"""The study summary has exactly the shape of findings.json in the results contract."""

from __future__ import annotations

import json

import pytest

from analysis import ALGORITHM_VERSION
from analysis.findings import NO_FLUID_SENTENCE, NO_T1_SENTENCE, TRIAGE_SENTENCE, summarize
from analysis.results import SignState
from analysis.signs import assess_signs
from analysis.volume import Sequence
from tests.analysis.test_signs_phantom import (
    Spine,
    diffuse_lesion,
    epidural_extension,
    focal_lesion,
    normal_spine,
)

LEVEL_KEYS = {
    "level", "marrow_infiltration", "cortical_destruction", "soft_tissue_extension", "compression_fracture",
    "pathologic_fracture_pattern", "suspicious_for_malignancy", "genant_grade", "height_loss_pct", "ha_mm",
    "hm_mm", "hp_mm", "lesion_fraction_pct", "t1_marrow_disc_ratio",
}
STUDY_KEYS = {"suspicious_for_malignancy", "multiple_lesions", "canal_compromise", "suspicious_level_count",
              "impression"}
STATES = {"present", "absent", "indeterminate"}
UID = "1.2.826.0.1.3680043.8.498.1"


def _findings(sequences: tuple[Sequence, ...], abnormal: bool) -> dict[str, object]:
    spine = normal_spine()
    if abnormal:
        focal_lesion(spine, "L4")
        epidural_extension(spine, "L2")
    signs = assess_signs(spine.render(sequences), spine.segmentation())
    series = {q: f"1.2.3.{i}" for i, q in enumerate(sequences)}
    out = summarize(UID, series, signs).to_json_dict()
    return json.loads(json.dumps(out))  # must survive JSON as is


def test_json_shape_matches_the_contract() -> None:
    doc = _findings((Sequence.T1, Sequence.STIR, Sequence.T2), abnormal=True)
    assert set(doc) == {"study_instance_uid", "algorithm_version", "series_used", "levels", "study"}
    assert doc["study_instance_uid"] == UID and doc["algorithm_version"] == ALGORITHM_VERSION
    series = doc["series_used"]
    assert isinstance(series, dict)
    assert series["T1"] == "1.2.3.0" and series["STIR"] == "1.2.3.1" and series["T1C"] is None
    levels = doc["levels"]
    assert isinstance(levels, list)
    assert [lv["level"] for lv in levels] == ["L1", "L2", "L3", "L4", "L5"]
    for lv in levels:
        assert set(lv) == LEVEL_KEYS
        for key in LEVEL_KEYS - {"level", "genant_grade", "height_loss_pct", "ha_mm", "hm_mm", "hp_mm",
                                 "lesion_fraction_pct", "t1_marrow_disc_ratio"}:
            assert lv[key] in STATES
        assert isinstance(lv["t1_marrow_disc_ratio"], float)
    study = doc["study"]
    assert isinstance(study, dict) and set(study) == STUDY_KEYS
    assert study["suspicious_for_malignancy"] == "present"
    assert study["multiple_lesions"] == "present"
    assert study["canal_compromise"] == "present"
    assert study["suspicious_level_count"] == 2
    by_level = {lv["level"]: lv for lv in levels}
    assert by_level["L2"]["soft_tissue_extension"] == "present"
    assert by_level["L4"]["marrow_infiltration"] == "present"
    impression = study["impression"]
    assert isinstance(impression, str)
    assert "L2" in impression and "L4" in impression and "epidural" in impression
    assert "Sequences used: sagittal T1, T2, STIR." in impression
    assert impression.endswith(TRIAGE_SENTENCE)
    assert "not a diagnosis" in impression


def _l3_t1_stir_line(spine: Spine) -> str:
    """The impression's part for L3 of ``spine`` read with T1 and STIR."""
    sequences = (Sequence.T1, Sequence.STIR)
    signs = assess_signs(spine.render(sequences), spine.segmentation())
    impression = summarize(UID, {q: "1.2.3" for q in sequences}, signs).study.impression
    return next(part for part in impression.split("; ") if "L3" in part)


def test_a_body_found_from_t1_and_stir_together_is_described_by_that() -> None:
    """Its T1 marrow/disc ratio is over 1, which alone reads as normal marrow; the impression
    says what found it instead."""
    spine = normal_spine()
    diffuse_lesion(spine, "L3", what="dim")
    line = _l3_t1_stir_line(spine)
    assert "darker on T1 and brighter on STIR than the study's other bodies" in line
    assert "STIR/T1 quotient" in line and "T1 marrow/disc" not in line


def test_a_faint_focus_with_a_mass_is_described_against_its_own_body() -> None:
    spine = normal_spine()
    epidural_extension(spine, "L3", depth_mm=7, what="hazy")
    line = _l3_t1_stir_line(spine)
    assert "darker on T1 and brighter on STIR than the body's own marrow" in line
    assert "STIR/T1 quotient" in line and "T1 marrow/disc" not in line
    assert "epidural soft-tissue extension" in line


def test_normal_study_says_so() -> None:
    doc = _findings((Sequence.T1, Sequence.STIR), abnormal=False)
    study = doc["study"]
    assert isinstance(study, dict)
    assert study["suspicious_for_malignancy"] == "absent"
    assert study["multiple_lesions"] == "absent"
    assert study["suspicious_level_count"] == 0
    assert "No level shows a sign of malignancy." in study["impression"]


def test_t2_only_study_says_what_it_could_not_assess() -> None:
    doc = _findings((Sequence.T2,), abnormal=False)
    levels = doc["levels"]
    assert isinstance(levels, list)
    assert all(lv["t1_marrow_disc_ratio"] is None for lv in levels)  # null, not a guess
    assert all(lv["marrow_infiltration"] == "indeterminate" for lv in levels)
    study = doc["study"]
    assert isinstance(study, dict)
    assert study["suspicious_for_malignancy"] == "indeterminate"
    assert study["suspicious_level_count"] == 0
    impression = study["impression"]
    assert "Not assessable:" in impression and "no sagittal T1" in impression and "all levels" in impression
    assert impression.count("no sagittal T1") == 1  # said once, not per level


def test_t1_only_study_says_a_stir_or_t2_is_needed_for_what_it_saw() -> None:
    doc = _findings((Sequence.T1,), abnormal=True)
    study = doc["study"]
    assert isinstance(study, dict)
    assert study["suspicious_for_malignancy"] == "indeterminate" and study["suspicious_level_count"] == 0
    assert NO_FLUID_SENTENCE in study["impression"] and NO_T1_SENTENCE not in study["impression"]
    with_stir = _findings((Sequence.T1, Sequence.STIR), abnormal=True)["study"]
    assert isinstance(with_stir, dict) and NO_FLUID_SENTENCE not in with_stir["impression"]


def test_levels_outside_the_contract_are_left_out_but_sorted_levels_kept() -> None:
    spine = normal_spine()
    signs = list(assess_signs(spine.render((Sequence.T1,)), spine.segmentation()))
    renamed = [signs[0].__class__(**{**signs[0].__dict__, "level": "T11"}), *reversed(signs[1:])]
    doc = summarize(UID, {Sequence.T1: "1.2"}, renamed).to_json_dict()
    assert [lv["level"] for lv in doc["levels"]] == ["L2", "L3", "L4", "L5"]


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="study_instance_uid"):
        summarize("", {}, [])
    with pytest.raises(TypeError, match="level_signs"):
        summarize(UID, {}, ["L1"])  # type: ignore[list-item]
    empty = summarize(UID, {}, []).to_json_dict()
    assert empty["levels"] == [] and empty["study"]["suspicious_for_malignancy"] == SignState.INDETERMINATE


def test_a_study_with_no_level_found_is_indeterminate_and_says_so() -> None:
    from analysis.findings import NO_LEVEL_SENTENCE

    findings = summarize("1.2.3", {Sequence.T2: "1.2.3.4"}, [], notes=["sacrum not identified"])
    study = findings.to_json_dict()["study"]
    assert study["suspicious_for_malignancy"] == "indeterminate"
    assert study["multiple_lesions"] == "indeterminate"
    assert study["suspicious_level_count"] == 0
    assert study["impression"].startswith(NO_LEVEL_SENTENCE)
    assert "Sacrum not identified." in study["impression"]
    assert "not a diagnosis" in study["impression"]
