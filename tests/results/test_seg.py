"""The SEG read back: a segment per body and per suspicious lesion, voxel for voxel, on its source series."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import cast

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread

from analysis.volume import Sequence
from node.pipeline.inputs import load_inputs
from node.results import ResultKind
from node.results.writer import write_result_objects
from node.study import group_dicom_folder, read_series
from tests.results.conftest import CLI, CREATED, Written, dciodvfy_report, unexpected_warnings

VERSE = {"T11": 18, "T12": 19, "L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24, "S1": 26}
SITES = {"T11": "12989004", "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004",
         "L4": "11994002", "L5": "49668003", "S1": "54735007"}


@pytest.fixture(scope="module")
def seg(written: Written) -> hd.seg.Segmentation:
    return hd.seg.segread(written.path(ResultKind.SEG))


def _segments(seg: hd.seg.Segmentation) -> dict[str, int]:
    return {seg.get_segment_description(n).segment_label: n for n in seg.segment_numbers}


def test_one_segment_per_body_then_one_per_suspicious_lesion(
    seg: hd.seg.Segmentation, written: Written
) -> None:
    labels = np.asarray(written.analysed.output.segmentation.labels.array)
    found = [level for level, value in VERSE.items() if (labels == value).any()]
    truth = written.analysed.truth["levels"]
    suspicious = [lv["level"] for lv in truth if lv["suspicious_for_malignancy"] == "present"]
    assert list(_segments(seg)) == found + [f"Lesion {level}" for level in suspicious]
    assert seg.SegmentationType == "BINARY"
    for label, number in _segments(seg).items():
        description = seg.get_segment_description(number)
        category = description.segmented_property_category
        kind = description.segmented_property_type
        if label.startswith("Lesion "):
            level = label.removeprefix("Lesion ")
            assert (category.value, kind.value) == ("49755003", "52988006")
            assert [r.value for r in description.anatomic_regions] == [SITES[level]]
        else:
            assert (category.value, kind.value, kind.scheme_designator) == ("91723000", SITES[label], "SCT")
        assert description.tracking_id == label


def test_segments_hold_the_label_map_on_the_series_it_was_drawn_on(
    seg: hd.seg.Segmentation, written: Written
) -> None:
    analysed = written.analysed
    t2_uid = analysed.inputs.series_uids[Sequence.T2]
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == t2_uid
    series = next(s for s in analysed.study.series if s.series_instance_uid == t2_uid)
    assert seg.FrameOfReferenceUID == series.headers[0].FrameOfReferenceUID
    stack = read_series(series.paths, headers=series.headers)
    uids = [s.sop_instance_uid for s in stack.slices]
    labels = np.asarray(analysed.output.segmentation.labels.array)
    assert labels.shape == stack.volume.array.shape
    segments = _segments(seg)
    for level, value in VERSE.items():
        if level not in segments:
            continue
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[segments[level]])[..., 0]
        np.testing.assert_array_equal(pixels > 0, labels == value, err_msg=level)
    lesion = next(ls for ls in analysed.output.level_signs if ls.level == "L3").lesion_mask
    assert lesion is not None
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[segments["Lesion L3"]])[..., 0]
    np.testing.assert_array_equal(pixels > 0, np.asarray(lesion.array) > 0)


def test_seg_copies_patient_and_study_in_a_new_series(seg: hd.seg.Segmentation, written: Written) -> None:
    source = written.analysed.study.series[0].headers[0]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyID", "StudyDate", "AccessionNumber"):
        assert seg.get(keyword) == source.get(keyword), keyword
    assert seg.SeriesInstanceUID not in {s.series_instance_uid for s in written.analysed.study.series}


def test_seg_passes_dciodvfy(written: Written) -> None:
    errors, warnings = dciodvfy_report(written.path(ResultKind.SEG))
    assert errors == []
    assert unexpected_warnings(warnings) == []


def test_an_enhanced_mr_source_gets_frame_references(written: Written, tmp_path: Path) -> None:
    """The same phantom as one Enhanced MR object per series: segments reference its frames.

    The analysis of the single-frame phantom is reused: the same seed gives the
    same study, grid and pixels, so its label map lies on the enhanced series too.
    """
    folder = tmp_path / "enhanced"
    made = subprocess.run(
        [str(CLI), "phantom", str(folder), "--seed", "11", "--enhanced",
         "--lesion", "L3:focal:epidural", "--fracture", "L1:2:benign"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert made.returncode == 0, made.stderr
    study = group_dicom_folder(folder / "dicom").studies[0]
    inputs = load_inputs(study)
    # the phantom's UIDs follow its options, --enhanced included: same grid and pixels, other study UID
    output = written.analysed.output
    output = replace(output, findings=replace(output.findings, study_instance_uid=inputs.study_instance_uid))
    objects = write_result_objects(
        output, inputs, study, tmp_path / "out", analysis_key="enhanced", created=CREATED
    )
    path = next(o.path for o in objects if o.kind == ResultKind.SEG)
    assert dciodvfy_report(path)[0] == []
    seg = hd.seg.segread(path)
    t2 = next(s for s in study.series if s.series_instance_uid == inputs.series_uids[Sequence.T2])
    (source,) = t2.headers
    stack = read_series(t2.paths, headers=t2.headers)
    frames = [s.frame_number for s in stack.slices]
    assert None not in frames
    known_frames = cast("list[int]", frames)  # every slice has its frame number, asserted just above
    labels = np.asarray(written.analysed.output.segmentation.labels.array)
    for level, number in _segments(seg).items():
        if level.startswith("Lesion"):
            continue
        pixels = seg.get_pixels_by_source_frame(
            str(source.SOPInstanceUID), known_frames, segment_numbers=[number],
            assert_missing_frames_are_empty=True,
        )[..., 0]
        np.testing.assert_array_equal(pixels > 0, labels == VERSE[level], err_msg=level)
    key = dcmread(next(o.path for o in objects if o.kind == ResultKind.KEY_IMAGE))
    (shown,) = key.SourceImageSequence
    assert shown.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert 1 <= shown.ReferencedFrameNumber <= len(frames)
