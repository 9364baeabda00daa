"""Choosing the series of a study, the reasons, and grouping a folder of files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from analysis.volume import Sequence
from node.study import StudyInputError, group_dicom_folder, read_volume, select_series
from tests.study.factory import (
    AXIAL,
    STIR,
    T1,
    T1C,
    T2,
    Acquisition,
    Grid,
    Study,
    single_frame_series,
    volume_array,
    write,
)


def series(
    study: Study, acq: Acquisition, number: int, slices: int = 12, grid: Grid | None = None, rows: int = 6
) -> list[Dataset]:
    return single_frame_series(volume_array(slices=slices, rows=rows, columns=5), grid or Grid(), acq,
                               study=study, number=number)


def test_full_study_picks_each_sequence_with_reasons() -> None:
    study = Study()
    headers = [
        series(study, replace(T1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), description="loc"), 1, 3),
        series(study, replace(T1, description="T2 SAG"), 2, 12),  # a T1 however it is labelled
        series(study, T2, 3, 12),
        series(study, STIR, 4, 12),
        series(study, replace(T2, description="AX T2"), 5, 20, Grid(orientation=AXIAL)),
        series(study, T1C, 6, 12),
    ]
    selection = select_series(headers)
    assert selection.analysable and not selection.problems
    assert {c.sequence: c.series.series_number for c in selection.choices} == {
        Sequence.T1: 2, Sequence.T2: 3, Sequence.STIR: 4, Sequence.T1C: 6,
    }
    t1 = selection.choice(Sequence.T1)
    assert t1 is not None and t1.reason == ("only candidate: series 2 'T2 SAG' "
                                           "(12 slices, 4 mm of spine, 48 mm across, 4 mm slices)")
    assert selection.notes == ()
    assert selection.study_instance_uid == study.study_uid


@pytest.mark.parametrize(
    ("loser", "winner", "why"),
    [
        # (number, slices, thickness, image type, rows) of the two candidates
        ((2, 16, 4.0, "DERIVED", 6), (3, 12, 4.0, "ORIGINAL", 6), "original, not derived"),
        # on a sagittal series the spine runs along the rows, not across the slices
        ((2, 16, 4.0, "ORIGINAL", 30), (3, 12, 4.0, "ORIGINAL", 40), "covers more of the spine"),
        ((2, 9, 4.0, "ORIGINAL", 6), (3, 15, 4.0, "ORIGINAL", 6), "covers more across it"),
        ((2, 10, 4.0, "ORIGINAL", 6), (3, 13, 3.0, "ORIGINAL", 6), "thinner slices"),
        ((2, 12, 4.0, "ORIGINAL", 6), (3, 12, 4.0, "ORIGINAL", 6), "latest of repeats"),
    ],
)
def test_preferences_between_candidates(
    loser: tuple[int, int, float, str, int], winner: tuple[int, int, float, str, int], why: str
) -> None:
    study = Study()
    headers = []
    for number, slices, thickness, kind, rows in (winner, loser):
        grid = Grid(slice_spacing=thickness, slice_thickness=thickness)
        acq = replace(T1, image_type=(kind, "PRIMARY", "M", "NONE"))
        headers.append(series(study, acq, number, slices, grid, rows))
    choice = select_series(headers).choice(Sequence.T1)
    assert choice is not None
    assert choice.series.series_number == winner[0]
    assert f"series {winner[0]} 'SAG T1 TSE' over series {loser[0]} 'SAG T1 TSE': {why}" in choice.reason


SERIES_NUMBER = Tag("SeriesNumber")
LUMBAR = Grid(origin=(-30.0, -100.0, 120.0))  # rows run from z 120 mm down to the sacrum
THORACIC = Grid(origin=(-30.0, -100.0, 440.0))


def test_a_series_of_another_part_of_the_spine_is_not_paired_with_the_lumbar_one() -> None:
    # A whole-spine study: the thoracic T2 station covers more, but a lumbar T2 is the pair of
    # the lumbar T1; with no lumbar STIR, the thoracic STIR is not used at all.
    study = Study()
    headers = [
        series(study, T1, 2, 12, LUMBAR, rows=300),
        series(study, T2, 3, 12, LUMBAR, rows=300),
        series(study, replace(T2, description="SAG T2 THORACIC"), 4, 12, THORACIC, rows=400),
        series(study, replace(STIR, description="SAG STIR THORACIC"), 5, 12, THORACIC, rows=400),
    ]
    selection = select_series(headers)
    assert {c.sequence: c.series.series_number for c in selection.choices} == {
        Sequence.T1: 2, Sequence.T2: 3,
    }
    assert ("series 4 'SAG T2 THORACIC' (T2) set aside: covers another part of the spine "
            "(z 121 to 440 mm) than the series analysed, series 2 'SAG T1 TSE' (z -119 to 120 mm)"
            ) in selection.notes
    assert any(n.startswith("series 5 'SAG STIR THORACIC' (STIR) set aside: covers another part")
               for n in selection.notes)
    assert any(n.startswith("no usable sagittal STIR") for n in selection.notes)


def test_series_that_each_overlap_a_long_one_but_not_each_other_are_not_paired() -> None:
    # a whole-spine T2 overlaps both a thoracic T1 and a lumbar STIR; those two share nothing
    study = Study()
    headers = [
        series(study, T1, 2, 12, THORACIC, rows=300),
        series(study, replace(T2, description="SAG T2 WHOLE SPINE"), 3, 12, THORACIC, rows=800),
        series(study, STIR, 4, 12, LUMBAR, rows=300),
    ]
    selection = select_series(headers)
    assert {c.sequence: c.series.series_number for c in selection.choices} == {
        Sequence.T2: 3, Sequence.STIR: 4,
    }
    assert any(n.startswith("series 2 'SAG T1 TSE' (T1) set aside: covers another part")
               for n in selection.notes)


def test_a_repeat_mixing_monochrome1_and_2_is_set_aside_for_the_other_series() -> None:
    study = Study()
    repeat = series(study, T2, 12, 12)
    repeat[3].PhotometricInterpretation = "MONOCHROME1"
    selection = select_series([series(study, T2, 2, 12), repeat])
    choice = selection.choice(Sequence.T2)
    assert choice is not None and choice.series.series_number == 2
    assert any(n.startswith("series 12 'SAG T2 TSE' (T2) set aside: mixed Photometric Interpretation")
               for n in selection.notes)


def test_of_two_stations_with_the_same_sequences_the_lowest_is_analysed() -> None:
    study = Study()
    headers = [series(study, T2, 4, 12, THORACIC, rows=400), series(study, T2, 3, 12, LUMBAR, rows=300)]
    choice = select_series(headers).choice(Sequence.T2)
    assert choice is not None and choice.series.series_number == 3


def test_a_station_with_more_sequences_wins_over_a_lower_one() -> None:
    study = Study()
    headers = [series(study, T1, 1, 12, THORACIC, rows=300), series(study, T2, 2, 12, THORACIC, rows=300),
               series(study, T2, 3, 12, LUMBAR, rows=300)]
    selection = select_series(headers)
    assert {c.sequence: c.series.series_number for c in selection.choices} == {Sequence.T1: 1, Sequence.T2: 2}


@pytest.mark.parametrize("number", ["A", "1.5", ""])
def test_a_series_number_that_is_not_a_whole_number_is_left_out(number: str) -> None:
    headers = series(Study(), T1, 1, 12)
    for ds in headers:  # as read from a file: pydicom converts the text when it is first used
        ds[SERIES_NUMBER] = RawDataElement(SERIES_NUMBER, "IS", len(number), number.encode(), 0, False, True)
    choice = select_series([headers]).choice(Sequence.T1)
    assert choice is not None and choice.series.series_number is None
    assert choice.reason.startswith("only candidate: series ? 'SAG T1 TSE'")


def test_unusable_series_is_set_aside_for_a_usable_one() -> None:
    study = Study()
    broken = series(study, T1, 7, 12, Grid(offsets=(*[4.0 * k for k in range(11)], 60.0)))
    selection = select_series([broken, series(study, T1, 2, 10)])
    choice = selection.choice(Sequence.T1)
    assert choice is not None and choice.series.series_number == 2
    assert any("series 7 'SAG T1 TSE' (T1) set aside: missing positions" in n for n in selection.notes)
    assert any(n.startswith("no usable sagittal STIR") for n in selection.notes)


def _ct_like(study: Study) -> list[Dataset]:
    headers = series(study, T1, 1, 3)
    for ds in headers:
        ds.Modality = "CT"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    return headers


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda s: [], "the study has no series"),
        (lambda s: [_ct_like(s)], "no MR image series (modalities: CT)"),
        (
            lambda s: [series(s, T2, 1, 20, Grid(orientation=AXIAL))],
            "no sagittal MR series (planes found: axial)",
        ),
        (
            lambda s: [series(s, replace(STIR, ti=2400.0, tr=9000.0, te=120.0, description="SAG FLAIR"), 1)],
            "no usable sagittal T1, T2, STIR, post-contrast T1 or Dixon series (sagittal series: OTHER)",
        ),
        (
            lambda s: [series(s, T1, 1, 1)],
            "no usable sagittal T1, T2, STIR, post-contrast T1 or Dixon series (sagittal series: T1); "
            "series 1 'SAG T1 TSE' (T1) set aside: a volume needs at least 2 slices, the series has 1",
        ),
    ],
)
def test_why_a_study_cannot_be_analysed(build: object, problem: str) -> None:
    selection = select_series(build(Study()))  # type: ignore[operator]
    assert not selection.analysable
    assert selection.problems == (problem,)
    assert selection.choices == ()


def test_the_problem_says_why_a_series_that_is_there_was_set_aside() -> None:
    gap = Grid(offsets=(*[4.0 * k for k in range(11)], 48.0))
    selection = select_series([series(Study(), T2, 4, 12, gap)])
    assert not selection.analysable
    (problem,) = selection.problems
    assert problem.startswith("no usable sagittal T1, T2, STIR, post-contrast T1 or Dixon series "
                              "(sagittal series: T2); ")
    assert "series 4 'SAG T2 TSE' (T2) set aside: missing positions" in problem


def test_a_second_copy_of_an_instance_in_a_folder_is_read_once(tmp_path: Path) -> None:
    """An export made twice into one folder must not read as two frames at each position (which
    costs the series its volume): the copy is skipped and says of which file it is a copy."""
    study = Study()
    paths = write(series(study, STIR, 3, 8), tmp_path / "stir")
    copy = tmp_path / "again" / "copy.dcm"
    copy.parent.mkdir()
    copy.write_bytes(paths[4].read_bytes())

    folder = group_dicom_folder(tmp_path)
    (files,) = folder.study(study.study_uid).series
    assert len(files.paths) == 8
    (kept,) = {paths[4], copy} & set(files.paths)
    (skipped,) = folder.skipped
    assert {skipped.path, kept} == {paths[4], copy} and f"already read from {kept}" in skipped.reason
    selection = select_series([files.headers])
    assert selection.choice(Sequence.STIR) is not None
    assert "other content" not in skipped.reason


def test_two_files_of_one_instance_with_other_content_say_which_was_used(tmp_path: Path) -> None:
    study = Study()
    paths = write(series(study, STIR, 3, 8), tmp_path / "a")
    corrected = dcmread(paths[2])
    corrected.SeriesDescription = "SAG STIR corrected"
    other = tmp_path / "b" / "other.dcm"
    other.parent.mkdir()
    corrected.save_as(other)

    (skipped,) = group_dicom_folder(tmp_path).skipped
    assert skipped.path == other
    assert "other content" in skipped.reason and f"so {paths[2].name} (the first in path order) was used" \
        in skipped.reason


def test_series_of_several_studies_are_refused() -> None:
    with pytest.raises(StudyInputError, match="2 studies"):
        select_series([series(Study(), T1, 1), series(Study(), T2, 2)])


def test_group_folder_then_select_then_read(tmp_path: Path) -> None:
    first, second = Study(), Study()
    t1 = series(first, T1, 2, 8)
    write(t1, tmp_path / "a" / "t1", shuffle=1)
    write(series(first, STIR, 3, 8), tmp_path / "a" / "nested" / "stir")
    write(series(second, T2, 1, 5), tmp_path / "b")
    (tmp_path / "a" / "README.txt").write_text("not DICOM")
    no_uid = series(second, T2, 9, 2)[0]
    del no_uid.SeriesInstanceUID
    write([no_uid], tmp_path / "c")

    folder = group_dicom_folder(tmp_path)
    assert sorted(s.study_instance_uid for s in folder.studies) == sorted([first.study_uid, second.study_uid])
    assert {p.path.name for p in folder.skipped} == {"README.txt", "im0000.dcm"}
    study = folder.study(first.study_uid)
    assert sorted(len(s.paths) for s in study.series) == [8, 8]

    selection = select_series([s.headers for s in study.series])
    assert [c.sequence for c in selection.choices] == [Sequence.T1, Sequence.STIR]
    chosen = selection.choice(Sequence.T1)
    assert chosen is not None
    files = next(s for s in study.series if s.series_instance_uid == chosen.series.series_instance_uid)
    volume = read_volume(files.paths, headers=files.headers)
    assert volume.array.shape == (8, 6, 5)
    assert volume.array[:, 0, 0].tolist() == (np.arange(8) * 7).tolist()
    with pytest.raises(ValueError, match="folder"):
        group_dicom_folder(tmp_path / "missing")
