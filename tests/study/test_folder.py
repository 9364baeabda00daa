"""Finding the DICOM files of a folder as a researcher hands it over (``analyze``)."""

from __future__ import annotations

from pathlib import Path

from node.study import group_dicom_folder
from tests.helpers.dicom import StudyUIDs, write_study


def test_a_series_in_a_linked_folder_is_read_and_a_link_loop_is_not_followed(tmp_path: Path) -> None:
    # Path.rglob followed no linked folder: such a series was left out without a word, and the
    # study analysed without it.
    uids = StudyUIDs.new(2)
    write_study(tmp_path / "elsewhere" / "first", 3, uids=StudyUIDs(uids.study, uids.series[:1]))
    write_study(tmp_path / "elsewhere" / "second", 4, uids=StudyUIDs(uids.study, uids.series[1:]))
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "01_T1").symlink_to(tmp_path / "elsewhere" / "first", target_is_directory=True)
    (folder / "02_T2").symlink_to(tmp_path / "elsewhere" / "second", target_is_directory=True)
    (folder / "02_T2_again").symlink_to(tmp_path / "elsewhere" / "second", target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")

    found = group_dicom_folder(folder)

    (study,) = found.studies
    assert {s.series_instance_uid: len(s.paths) for s in study.series} == {
        uids.series[0]: 3, uids.series[1]: 4}
    assert [(s.path.name, s.reason) for s in found.skipped] == [("gone.dcm", "a link to nothing")]


def test_the_results_folder_inside_the_input_folder_is_not_read(tmp_path: Path) -> None:
    # `analyze study --out study/results` run twice read the first run's result objects back
    # as series of the study.
    uids = StudyUIDs.new(2)
    folder = tmp_path / "study"
    write_study(folder / "T1", 3, uids=StudyUIDs(uids.study, uids.series[:1]))
    write_study(folder / "results", 2, uids=StudyUIDs(uids.study, uids.series[1:]))

    found = group_dicom_folder(folder, exclude=folder / "results")

    (study,) = found.studies
    assert [(s.series_instance_uid, len(s.paths)) for s in study.series] == [(uids.series[0], 3)]
    assert [(s.path, s.reason) for s in found.skipped] == [
        (folder / "results", "the results folder (--out): not read as input")]
    assert len(group_dicom_folder(folder).studies[0].series) == 2
    assert len(group_dicom_folder(folder, exclude=folder).studies[0].series) == 2
