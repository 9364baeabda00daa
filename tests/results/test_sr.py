"""The SR read back as a receiver would: every item of the results contract, against the phantom's truth."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import highdicom as hd
import pytest

from analysis import ALGORITHM_VERSION
from node.results import ResultKind
from node.results.writer import write_result_objects
from tests.results.conftest import (
    ANALYSIS_KEY,
    CREATED,
    Written,
    code_of,
    dciodvfy_report,
    evaluation_code,
    measurement_report,
    unexpected_warnings,
)

# Transcribed from ../shared/docs/results-contract.md, not from the code under test.
SITES = {"T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004",
         "L4": "11994002", "L5": "49668003", "S1": "54735007"}
STATES = {"present": "52101004", "absent": "272519000", "indeterminate": "82334004"}
LEVEL_SIGNS = {"MARROW": "marrow_infiltration", "CORTEX": "cortical_destruction",
               "STE": "soft_tissue_extension", "VCF": "compression_fracture",
               "PATHFX": "pathologic_fracture_pattern", "SUSPMAL": "suspicious_for_malignancy"}
LEVEL_NUMBERS = {"HA": ("ha_mm", "mm"), "HM": ("hm_mm", "mm"), "HP": ("hp_mm", "mm"),
                 "HLOSS": ("height_loss_pct", "%"), "GENANT": ("genant_grade", "{grade}"),
                 "LESFRAC": ("lesion_fraction_pct", "%"), "T1MD": ("t1_marrow_disc_ratio", "1")}
STUDY_SIGNS = {"SUSPMAL": "suspicious_for_malignancy", "MULTI": "multiple_lesions",
               "CANAL": "canal_compromise"}


@pytest.fixture(scope="module")
def sr(written: Written) -> hd.sr.Comprehensive3DSR:
    sr = hd.sr.srread(written.path(ResultKind.SR))
    assert isinstance(sr, hd.sr.Comprehensive3DSR), type(sr).__name__
    return sr


@pytest.fixture(scope="module")
def findings(written: Written) -> dict[str, Any]:
    return written.analysed.output.findings.to_json_dict()


def test_sr_is_a_tid1500_report_of_the_study(sr: hd.sr.Comprehensive3DSR, written: Written) -> None:
    source = written.analysed.study.series[0].headers[0]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.StudyInstanceUID == written.analysed.truth["study_instance_uid"]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                    "StudyDate", "StudyTime", "AccessionNumber"):
        assert sr.get(keyword) == source.get(keyword), keyword
    assert sr.SeriesInstanceUID not in {s.series_instance_uid for s in written.analysed.study.series}
    title = sr.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("126000", "DCM")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    schemes = {item.CodingSchemeDesignator: item for item in sr.CodingSchemeIdentificationSequence}
    assert "99LSENT" in schemes and schemes["99LSENT"].CodingSchemeName
    assert "PredecessorDocumentsSequence" not in sr


def test_the_evidence_lists_every_series_the_findings_used(sr: hd.sr.Comprehensive3DSR,
                                                          written: Written) -> None:
    """Not only the series the bodies were drawn on: a viewer fetches the evidence to show it."""
    analysed = written.analysed
    used = set(analysed.inputs.series_uids.values())
    assert len(used) == 3  # the phantom's T1, T2 and STIR
    expected = {(s.series_instance_uid, str(h.SOPInstanceUID))
                for s in analysed.study.series if s.series_instance_uid in used for h in s.headers}
    seg = written.objects[0]
    listed = {(str(series.SeriesInstanceUID), str(item.ReferencedSOPInstanceUID))
              for study in sr.CurrentRequestedProcedureEvidenceSequence
              for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert listed == expected | {(seg.series_instance_uid, seg.sop_instance_uid)}


def test_the_observer_is_the_product_device_with_its_version(sr: hd.sr.Comprehensive3DSR) -> None:
    (observer,) = measurement_report(sr).get_observer_contexts()
    assert code_of(observer.observer_type) == ("121007", "DCM")
    device = observer.observer_identifying_attributes
    assert isinstance(device, hd.sr.DeviceObserverIdentifyingAttributes) and device.name is not None
    assert "Lumbar Sentinel" in device.name and ALGORITHM_VERSION in device.name
    assert sr.SoftwareVersions == ALGORITHM_VERSION


def test_one_group_per_level_with_the_contract_codes_and_values(
    sr: hd.sr.Comprehensive3DSR, findings: dict[str, Any], written: Written
) -> None:
    seg = hd.seg.segread(written.path(ResultKind.SEG))
    report = measurement_report(sr)
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    assert list(groups) == [lv["level"] for lv in findings["levels"]]
    for level in findings["levels"]:
        name = level["level"]
        group = groups[name]
        assert [code_of(s.value) for s in group.finding_sites] == [(SITES[name], "SCT")]
        ref = group.referenced_segment
        assert ref is not None
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_segment_numbers is not None
        (number,) = ref.referenced_segment_numbers
        assert seg.get_segment_description(number).segment_label == name
        evaluations = {q.name.value: q for q in group.get_qualitative_evaluations()}
        assert set(evaluations) == set(LEVEL_SIGNS)
        for code, field in LEVEL_SIGNS.items():
            assert evaluations[code].name.scheme_designator == "99LSENT"
            assert code_of(evaluations[code].value) == (STATES[level[field]], "SCT"), (name, code)
        numbers = {m.name.value: m for m in group.get_measurements()}
        assert {m.name.scheme_designator for m in numbers.values()} == {"99LSENT"}
        for code, (field, unit) in LEVEL_NUMBERS.items():
            if level[field] is None:
                assert code not in numbers, (name, code)
                continue
            assert numbers[code].value == pytest.approx(level[field], abs=1e-6), (name, code)
            assert code_of(numbers[code].unit) == (unit, "UCUM"), (name, code)


def test_the_phantom_truth_reads_back(sr: hd.sr.Comprehensive3DSR, written: Written) -> None:
    truth = {lv["level"]: lv for lv in written.analysed.truth["levels"]}
    report = measurement_report(sr)
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    suspicious = [name for name, lv in truth.items() if lv["suspicious_for_malignancy"] == "present"]
    assert suspicious == ["L3"]
    for name in ("L3", "L1"):
        evaluations = {q.name.value: evaluation_code(q) for q in groups[name].get_qualitative_evaluations()}
        expected = truth[name]
        assert evaluations["SUSPMAL"] == STATES[expected["suspicious_for_malignancy"]]
        assert evaluations["VCF"] == STATES[expected["compression_fracture"]]
        assert evaluations["MARROW"] == STATES[expected["marrow_infiltration"]]
        grade = {m.name.value: m.value for m in groups[name].get_measurements()}["GENANT"]
        assert grade == expected["genant_grade"]
    (study,) = report.get_image_measurement_groups()
    numbers = {m.name.value: m.value for m in study.get_measurements()}
    assert numbers["NSUSP"] == len(suspicious)


def test_the_study_group_and_the_impression(sr: hd.sr.Comprehensive3DSR, findings: dict[str, Any]) -> None:
    (study,) = measurement_report(sr).get_image_measurement_groups()
    assert study.tracking_identifier == "Study"
    assert [code_of(s.value) for s in study.finding_sites] == [("122496007", "SCT")]
    evaluations = {q.name.value: q.value for q in study.get_qualitative_evaluations()}
    for code, field in STUDY_SIGNS.items():
        assert code_of(evaluations[code]) == (STATES[findings["study"][field]], "SCT"), code
    (count,) = study.get_measurements()
    assert code_of(count.name) == ("NSUSP", "99LSENT")
    assert code_of(count.unit) == ("{levels}", "UCUM")
    assert count.value == findings["study"]["suspicious_level_count"]
    (impression,) = hd.sr.utils.find_content_items(
        sr, name=hd.sr.CodedConcept("121073", "DCM", "Impression"), recursive=True
    )
    assert impression.TextValue == findings["study"]["impression"]
    assert "not a diagnosis" in impression.TextValue


def test_sr_passes_dciodvfy_and_dsrdump(written: Written) -> None:
    path = written.path(ResultKind.SR)
    errors, warnings = dciodvfy_report(path)
    assert errors == []
    assert unexpected_warnings(warnings) == []
    dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "Imaging Measurement Report" in dump.stdout and "Suspicious for malignancy" in dump.stdout
    assert dump.stderr.strip() == ""


def test_a_new_analysis_lists_the_earlier_sr_as_predecessor(written: Written, tmp_path: Any) -> None:
    earlier = next(o for o in written.objects if o.kind == ResultKind.SR)
    analysed = written.analysed
    objects = write_result_objects(
        analysed.output, analysed.inputs, analysed.study, tmp_path,
        analysis_key=ANALYSIS_KEY + " again", created=CREATED, predecessors=[earlier],
    )
    later = next(o for o in objects if o.kind == ResultKind.SR)
    assert later.sop_instance_uid != earlier.sop_instance_uid
    sr = hd.sr.srread(later.path)
    (study_item,) = sr.PredecessorDocumentsSequence
    assert study_item.StudyInstanceUID == sr.StudyInstanceUID
    (series_item,) = study_item.ReferencedSeriesSequence
    assert series_item.SeriesInstanceUID == earlier.series_instance_uid
    (instance,) = series_item.ReferencedSOPSequence
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        earlier.sop_class_uid, earlier.sop_instance_uid)
    assert dciodvfy_report(later.path)[0] == []
    assert json.dumps(sr.to_json_dict())  # the whole object stays encodable
