"""write_result_objects: what it returns, determinism across re-runs, and clear errors on bad input."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from analysis.findings import summarize
from analysis.results import SpineSegmentation
from analysis.volume import Sequence
from node.pipeline.inputs import load_inputs
from node.pipeline.run import AnalysisOutput
from node.results import ResultKind
from node.results.writer import write_result_objects
from node.study import group_dicom_folder, read_series
from tests.results.conftest import (
    ANALYSIS_KEY,
    CREATED,
    Written,
    dciodvfy_report,
    evaluation_code,
    measurement_report,
)


def _uids(ds: Dataset) -> list[tuple[str, str]]:
    """Every UI element of a data set, nested ones included, in order."""
    found: list[tuple[str, str]] = []

    def visit(item: Dataset, path: str) -> None:
        for elem in item:
            if elem.VR == "UI":
                found.append((f"{path}{elem.keyword}", str(elem.value)))
            elif elem.VR == "SQ":
                for n, child in enumerate(elem.value):
                    visit(child, f"{path}{elem.keyword}[{n}].")

    visit(ds, "")
    return found


def test_three_objects_described_as_written(written: Written) -> None:
    kinds = [o.kind for o in written.objects]
    assert kinds == [ResultKind.SEG, ResultKind.SR, ResultKind.KEY_IMAGE]
    series = set()
    for obj in written.objects:
        ds = dcmread(obj.path)
        assert obj.sha256 == hashlib.sha256(obj.path.read_bytes()).hexdigest()
        assert (obj.sop_class_uid, obj.sop_instance_uid, obj.series_instance_uid) == (
            ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        series.add(obj.series_instance_uid)
    assert len(series) == 3


def test_the_same_job_writes_the_same_objects(written: Written, tmp_path: Path) -> None:
    analysed = written.analysed
    again = write_result_objects(
        analysed.output, analysed.inputs, analysed.study, tmp_path, analysis_key=ANALYSIS_KEY, created=CREATED
    )
    for first, second in zip(written.objects, again, strict=True):
        assert _uids(dcmread(first.path)) == _uids(dcmread(second.path)), first.kind
        assert first.sha256 == second.sha256, first.kind
        assert (first.sop_instance_uid, first.series_instance_uid) == (
            second.sop_instance_uid, second.series_instance_uid)


def test_another_analysis_gets_uids_of_its_own(written: Written, tmp_path: Path) -> None:
    analysed = written.analysed
    other = write_result_objects(
        analysed.output, analysed.inputs, analysed.study, tmp_path, analysis_key="analysis 2", created=CREATED
    )
    ours = {o.sop_instance_uid for o in written.objects} | {o.series_instance_uid for o in written.objects}
    theirs = {o.sop_instance_uid for o in other} | {o.series_instance_uid for o in other}
    assert not ours & theirs


def test_bad_input_is_refused_naming_the_argument(written: Written, tmp_path: Path) -> None:
    analysed = written.analysed
    args = (analysed.output, analysed.inputs, analysed.study)
    with pytest.raises(ValueError, match="analysis_key"):
        write_result_objects(*args, tmp_path, analysis_key=" ", created=CREATED)
    with pytest.raises(TypeError, match="created"):
        write_result_objects(*args, tmp_path, analysis_key="a", created="2026-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out_dir"):
        write_result_objects(*args, str(tmp_path), analysis_key="a", created=CREATED)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="output"):
        write_result_objects(None, *args[1:], tmp_path, analysis_key="a", created=CREATED)  # type: ignore[arg-type]
    seg = next(o for o in written.objects if o.kind == ResultKind.SEG)
    with pytest.raises(ValueError, match="predecessors"):
        write_result_objects(*args, tmp_path, analysis_key="a", created=CREATED, predecessors=[seg])
    with pytest.raises(TypeError, match="predecessors"):
        write_result_objects(*args, tmp_path, analysis_key="a", created=CREATED,
                             predecessors=["1.2.3"])  # type: ignore[list-item]
    other_study = type(analysed.study)("1.2.3.4", analysed.study.series)
    with pytest.raises(ValueError, match="study"):
        write_result_objects(analysed.output, analysed.inputs, other_study, tmp_path,
                             analysis_key="a", created=CREATED)
    assert not any(tmp_path.iterdir()), "nothing is written before the input is checked"


def test_a_study_without_bodies_gets_an_sr_and_a_key_image_but_no_seg(
    written: Written, tmp_path: Path
) -> None:
    analysed = written.analysed
    labels = analysed.output.segmentation.labels
    empty = SpineSegmentation(labels.with_array(np.zeros_like(labels.array)), (), 0.0, False)
    findings = summarize(analysed.inputs.study_instance_uid, dict(analysed.inputs.series_uids), [])
    output = AnalysisOutput(findings, empty, ())
    objects = write_result_objects(
        output, analysed.inputs, analysed.study, tmp_path, analysis_key="no bodies", created=CREATED
    )
    assert [o.kind for o in objects] == [ResultKind.SR, ResultKind.KEY_IMAGE]
    report = measurement_report(hd.sr.srread(objects[0].path))
    assert report.get_volumetric_roi_measurement_groups() == []
    (study,) = report.get_image_measurement_groups()
    evaluations = {q.name.value: evaluation_code(q) for q in study.get_qualitative_evaluations()}
    assert evaluations["SUSPMAL"] == "82334004"
    # with no body to find the midline by, the key image shows the middle slice
    t2_uid = analysed.inputs.series_uids[Sequence.T2]
    t2 = next(s for s in analysed.study.series if s.series_instance_uid == t2_uid)
    slices = read_series(t2.paths, headers=t2.headers).slices
    key = dcmread(objects[1].path)
    assert key.SourceImageSequence[0].ReferencedSOPInstanceUID == slices[len(slices) // 2].sop_instance_uid
    for obj in objects:
        assert dciodvfy_report(obj.path)[0] == [], obj.kind


@pytest.mark.parametrize(("character_set", "name", "written_as"), [
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "ISO_IR 192"),
    (["ISO 2022 IR 6", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "ISO_IR 192"),
    ("", "Doe^Jane", "ISO_IR 192"),
    ("ISO_IR 100", "Müller^Jörg", "ISO_IR 100"),
])
def test_any_source_character_set_gets_results_with_the_names_kept(
        written: Written, tmp_path: Path, character_set: str | list[str], name: str, written_as: str) -> None:
    """highdicom refuses some character sets it would copy from the source: those results are in UTF-8."""
    analysed = written.analysed
    folder = tmp_path / "dicom"
    for series in analysed.study.series:
        for path in series.paths:
            ds = dcmread(path)
            ds.SpecificCharacterSet = character_set
            ds.PatientName = name
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / path.parent.name / path.name)
    study = group_dicom_folder(folder).studies[0]
    objects = write_result_objects(analysed.output, load_inputs(study), study, tmp_path / "out",
                                   analysis_key=ANALYSIS_KEY, created=CREATED)
    assert [o.kind for o in objects] == [ResultKind.SEG, ResultKind.SR, ResultKind.KEY_IMAGE]
    for obj in objects:
        ds = dcmread(obj.path)
        assert (ds.SpecificCharacterSet, str(ds.PatientName)) == (written_as, name), obj.kind
        assert dciodvfy_report(obj.path)[0] == [], obj.kind


@pytest.mark.parametrize("empty", [False, True])
def test_a_source_without_slice_thickness_gets_a_seg_with_its_slice_spacing(
        written: Written, tmp_path: Path, empty: bool) -> None:
    """Slice Thickness is Type 2 (it may be empty) and some senders leave it out; the SEG needs one."""
    analysed = written.analysed
    folder = tmp_path / "dicom"
    for series in analysed.study.series:
        for path in series.paths:
            ds = dcmread(path)
            if empty:
                ds.SliceThickness = None
            else:
                del ds.SliceThickness
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / path.parent.name / path.name)
    study = group_dicom_folder(folder).studies[0]
    inputs = load_inputs(study)
    objects = write_result_objects(analysed.output, inputs, study, tmp_path / "out",
                                   analysis_key=ANALYSIS_KEY, created=CREATED)
    assert [o.kind for o in objects] == [ResultKind.SEG, ResultKind.SR, ResultKind.KEY_IMAGE]
    seg = dcmread(objects[0].path)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = inputs.volumes[Sequence.T2].spacing[2]
    assert float(measures.SliceThickness) == pytest.approx(spacing, abs=1e-4)
    for obj in objects:
        assert dciodvfy_report(obj.path)[0] == [], obj.kind


def _times(ds: Dataset) -> dict[str, str]:
    keywords = ("ContentDate", "ContentTime", "SeriesDate", "SeriesTime", "InstanceCreationDate",
                "InstanceCreationTime", "DateOfSecondaryCapture", "TimeOfSecondaryCapture")
    return {k: str(ds.get(k)) for k in keywords if k in ds}


def test_times_are_the_node_s_local_time(written: Written, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # DICOM times are local: a report stamped in UTC showed in New York as written five hours
    # later than it was (CREATED is 10:20:30 UTC, 05:20:30 there in March)
    analysed = written.analysed
    with monkeypatch.context() as local:
        local.setenv("TZ", "America/New_York")
        time.tzset()
        objects = write_result_objects(analysed.output, analysed.inputs, analysed.study, tmp_path,
                                       analysis_key=ANALYSIS_KEY, created=CREATED)
    time.tzset()
    for obj in objects:
        ds = dcmread(obj.path)
        times = _times(ds)
        assert {v for k, v in times.items() if k.endswith("Date")} == {"20260304"}, obj.kind
        assert {v[:6] for k, v in times.items() if k.endswith("Time")} == {"052030"}, obj.kind
        assert "TimezoneOffsetFromUTC" not in ds, obj.kind


def test_times_follow_the_source_s_timezone_offset(written: Written, tmp_path: Path) -> None:
    # the offset applies to every date and time of an object, the copied study date too
    analysed = written.analysed
    dicom = tmp_path / "dicom"
    shutil.copytree(analysed.phantom / "dicom", dicom)
    for path in dicom.rglob("*.dcm"):
        ds = dcmread(path)
        ds.TimezoneOffsetFromUTC = "+0900"
        ds.save_as(path)
    study = group_dicom_folder(dicom).studies[0]
    objects = write_result_objects(analysed.output, load_inputs(study), study, tmp_path / "out",
                                   analysis_key=ANALYSIS_KEY, created=CREATED)
    for obj in objects:
        ds = dcmread(obj.path)
        times = _times(ds)
        assert ds.TimezoneOffsetFromUTC == "+0900", obj.kind
        assert {v for k, v in times.items() if k.endswith("Date")} == {"20260304"}, obj.kind
        assert {v[:6] for k, v in times.items() if k.endswith("Time")} == {"192030"}, obj.kind
        assert ds.StudyDate == study.series[0].headers[0].StudyDate, obj.kind
        errors, _ = dciodvfy_report(obj.path)
        assert errors == [], (obj.kind, errors)
