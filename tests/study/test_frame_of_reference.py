"""Series in different Frames of Reference are never analysed together (PS3.3 C.7.4.1)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from analysis.volume import Sequence
from node.pipeline.inputs import load_inputs
from node.study import StudySelection, group_dicom_folder, select_series
from tests.study.factory import (
    STIR,
    T1,
    T2,
    Acquisition,
    Grid,
    Study,
    single_frame_series,
    volume_array,
    write,
)

OTHER_FRAME = "another Frame of Reference than the series analysed"


def series(study: Study, acq: Acquisition, number: int, *, frame: str | None = None,
           shift_mm: float = 0.0) -> list[Dataset]:
    """A sagittal series; ``frame`` puts it in another Frame of Reference ("": none stated)."""
    grid = Grid(origin=(-30.0, -100.0, 120.0 + shift_mm))
    headers = single_frame_series(volume_array(slices=12, rows=30, columns=5, seed=number), grid, acq,
                                  study=study, number=number)
    for ds in headers:
        if frame == "":
            del ds.FrameOfReferenceUID
        elif frame is not None:
            ds.FrameOfReferenceUID = frame
    return headers


def numbers(selection: StudySelection) -> dict[Sequence, int | None]:
    return {c.sequence: c.series.series_number for c in selection.choices}


def chosen(headers: list[list[Dataset]]) -> dict[Sequence, int | None]:
    return numbers(select_series(headers))


def test_a_series_in_another_frame_is_set_aside_with_a_note() -> None:
    # the reviewer's study: the T1 repositioned 12 mm in a frame of its own
    study = Study()
    headers = [series(study, T1, 1, frame=generate_uid(), shift_mm=12.0), series(study, T2, 2),
               series(study, STIR, 3)]
    selection = select_series(headers)
    assert numbers(selection) == {Sequence.T2: 2, Sequence.STIR: 3}
    assert (f"series 1 'SAG T1 TSE' (T1) set aside: {OTHER_FRAME}, series 2 'SAG T2 TSE', "
            "so its positions cannot be matched to theirs") in selection.notes
    assert "no usable sagittal T1: no T1 marrow signal assessment" in selection.notes
    assert selection.analysable


def test_the_frame_shared_by_the_most_contrasts_is_analysed_whichever_comes_first() -> None:
    study = Study()
    elsewhere = generate_uid()
    headers = [series(study, T1, 1), series(study, T2, 2, frame=elsewhere),
               series(study, STIR, 3, frame=elsewhere)]
    assert chosen(headers) == {Sequence.T2: 2, Sequence.STIR: 3}
    assert chosen(headers[::-1]) == {Sequence.T2: 2, Sequence.STIR: 3}


def test_between_frames_of_as_many_contrasts_the_one_with_the_t1_is_analysed() -> None:
    study = Study()
    headers = [series(study, T2, 2), series(study, T1, 1, frame=generate_uid())]
    assert chosen(headers) == {Sequence.T1: 1}
    assert chosen(headers[::-1]) == {Sequence.T1: 1}


def test_of_two_frames_with_the_same_contrasts_the_later_acquisition_is_analysed() -> None:
    # the patient moved and the sequences were run again in a new frame
    study, again = Study(), generate_uid()
    headers = [series(study, T1, 1), series(study, T2, 2),
               series(study, replace(T1, description="SAG T1 REPEAT"), 5, frame=again),
               series(study, replace(T2, description="SAG T2 REPEAT"), 6, frame=again)]
    selection = select_series(headers)
    assert numbers(selection) == {Sequence.T1: 5, Sequence.T2: 6}
    assert sum(OTHER_FRAME in note for note in selection.notes) == 2


def test_one_shared_frame_changes_nothing() -> None:
    study = Study()
    selection = select_series([series(study, T1, 1), series(study, T2, 2), series(study, STIR, 3)])
    assert numbers(selection) == {
        Sequence.T1: 1, Sequence.T2: 2, Sequence.STIR: 3,
    }
    assert not any("Frame of Reference" in note for note in selection.notes)


def test_a_series_stating_no_frame_is_not_matched_to_series_that_state_one() -> None:
    study = Study()
    selection = select_series([series(study, T1, 1, frame=""), series(study, T2, 2), series(study, STIR, 3)])
    assert numbers(selection) == {Sequence.T2: 2, Sequence.STIR: 3}
    assert ("series 1 'SAG T1 TSE' (T1) set aside: no Frame of Reference UID, so its positions cannot be "
            "matched to those of the series analysed, series 2 'SAG T2 TSE'") in selection.notes


def test_series_that_all_state_no_frame_are_analysed_together_with_a_note() -> None:
    # a sender that strips it everywhere: as before, but the assumption is said
    study = Study()
    selection = select_series([series(study, T1, 1, frame=""), series(study, T2, 2, frame="")])
    assert numbers(selection) == {Sequence.T1: 1, Sequence.T2: 2}
    assert ("the series analysed state no Frame of Reference UID: their positions are taken to be in one "
            "frame") in selection.notes


def test_a_series_mixing_frames_is_set_aside_for_a_repeat() -> None:
    # it was chosen as the latest repeat and then could not be read at all
    study = Study()
    mixed = series(study, T2, 12)
    mixed[4].FrameOfReferenceUID = generate_uid()
    selection = select_series([series(study, T2, 2), mixed])
    assert numbers(selection) == {Sequence.T2: 2}
    assert any(note.startswith("series 12 'SAG T2 TSE' (T2) set aside: files belong to 2 different frames "
                               "of reference") for note in selection.notes)


def test_load_inputs_reads_only_the_series_of_the_frame_analysed(tmp_path: Path) -> None:
    study = Study()
    write(series(study, T1, 1, frame=generate_uid(), shift_mm=12.0), tmp_path / "t1")
    write(series(study, T2, 2), tmp_path / "t2")
    write(series(study, STIR, 3), tmp_path / "stir")
    inputs = load_inputs(group_dicom_folder(tmp_path).study(study.study_uid))
    assert set(inputs.volumes) == {Sequence.T2, Sequence.STIR}
    assert any(OTHER_FRAME in note for note in inputs.notes)
