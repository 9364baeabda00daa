"""Choosing the series of a study, the reasons, and grouping a folder of files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

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
    study: Study, acq: Acquisition, number: int, slices: int = 12, grid: Grid | None = None
) -> list[Dataset]:
    return single_frame_series(volume_array(slices=slices, rows=6, columns=5), grid or Grid(), acq,
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
    assert t1 is not None and t1.reason.startswith("only candidate: series 2 'T2 SAG' (12 slices, 48 mm")
    assert selection.notes == ()
    assert selection.study_instance_uid == study.study_uid


@pytest.mark.parametrize(
    ("loser", "winner", "why"),
    [
        # (number, slices, thickness, image type) of the two candidates
        ((2, 16, 4.0, "DERIVED"), (3, 12, 4.0, "ORIGINAL"), "original, not derived"),
        ((2, 9, 4.0, "ORIGINAL"), (3, 15, 4.0, "ORIGINAL"), "covers more of the spine"),
        ((2, 10, 4.0, "ORIGINAL"), (3, 13, 3.0, "ORIGINAL"), "thinner slices"),
        ((2, 12, 4.0, "ORIGINAL"), (3, 12, 4.0, "ORIGINAL"), "latest of repeats"),
    ],
)
def test_preferences_between_candidates(
    loser: tuple[int, int, float, str], winner: tuple[int, int, float, str], why: str
) -> None:
    study = Study()
    headers = []
    for number, slices, thickness, kind in (winner, loser):
        grid = Grid(slice_spacing=thickness, slice_thickness=thickness)
        acq = replace(T1, image_type=(kind, "PRIMARY", "M", "NONE"))
        headers.append(series(study, acq, number, slices, grid))
    choice = select_series(headers).choice(Sequence.T1)
    assert choice is not None
    assert choice.series.series_number == winner[0]
    assert f"series {winner[0]} 'SAG T1 TSE' over series {loser[0]} 'SAG T1 TSE': {why}" in choice.reason


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
