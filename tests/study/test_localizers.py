"""A localizer stored inside a series is left out of it; a mixed series that is not used says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from analysis.volume import Plane, Sequence
from node.study import classify_series, read_series, select_series
from node.study.frames import series_frame_headers
from tests.study.factory import (
    AXIAL,
    T1,
    T2,
    Acquisition,
    Grid,
    Study,
    enhanced_mr,
    single_frame_series,
    volume_array,
    write,
)

SCOUT = Acquisition(tr=5.0, te=2.0, scanning=("GR",), variant=("SP",), flip=20.0,
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), description="SAG T2 TSE")


def t2_with_planning_image(study: Study, image_type: tuple[str, ...] = SCOUT.image_type) -> list[Dataset]:
    """The reviewer's study: a sagittal T2 holding an axial planning image of its own Series UID."""
    t2 = single_frame_series(volume_array(slices=12, rows=30, columns=5), Grid(), T2, study=study, number=2)
    (scout,) = single_frame_series(volume_array(slices=1, rows=16, columns=16, seed=9),
                                   Grid(orientation=AXIAL, origin=(-144.0, -144.0, 0.0)),
                                   replace(SCOUT, image_type=image_type), study=study, number=2)
    scout.SeriesInstanceUID = t2[0].SeriesInstanceUID
    scout.InstanceNumber = 0
    return [scout, *t2]


def test_a_localizer_image_is_left_out_before_the_series_is_classified() -> None:
    found = classify_series(t2_with_planning_image(Study()))
    assert (found.plane, found.sequence) == (Plane.SAGITTAL, Sequence.T2)
    assert found.localizers_left_out == 1
    assert found.reasons[0] == "1 localizer image left out"


def test_a_series_with_a_localizer_is_chosen_with_its_slices_and_a_note() -> None:
    study = Study()
    t1 = single_frame_series(volume_array(slices=12, rows=30, columns=5), Grid(), T1, study=study, number=1)
    selection = select_series([t1, t2_with_planning_image(study)])
    choice = selection.choice(Sequence.T2)
    assert choice is not None and choice.series.series_number == 2
    assert choice.series.slices == 12 and choice.series.volume_problem is None
    assert "series 2 'SAG T2 TSE': 1 localizer image left out" in selection.notes
    assert not any("no usable sagittal T2" in note for note in selection.notes)


def test_the_volume_and_its_files_are_read_without_the_localizer(tmp_path: Path) -> None:
    headers = t2_with_planning_image(Study())
    paths = write(headers, tmp_path)
    series = read_series(paths)
    assert series.volume.array.shape == (12, 30, 5)
    np.testing.assert_array_equal(series.volume.array, volume_array(slices=12, rows=30, columns=5))
    assert paths[0] not in {s.path for s in series.slices}
    files, datasets, frames = series_frame_headers(paths)
    assert paths[0] not in files and len(datasets) == len(frames) == 12


def test_a_localizer_frame_of_an_enhanced_object_is_left_out(tmp_path: Path) -> None:
    array = volume_array(slices=7, rows=9, columns=5)
    ds = enhanced_mr(array, Grid(), T2)
    last = ds.PerFrameFunctionalGroupsSequence[6]
    last.PlaneOrientationSequence = DicomSequence([Dataset()])
    last.PlaneOrientationSequence[0].ImageOrientationPatient = list(AXIAL)
    last.MRImageFrameTypeSequence = DicomSequence([Dataset()])
    last.MRImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "LOCALIZER", "NONE"]
    series = read_series(write([ds], tmp_path))
    np.testing.assert_array_equal(series.volume.array, array[:6])
    assert [s.frame_number for s in series.slices] == [1, 2, 3, 4, 5, 6]
    found = classify_series([ds])
    assert (found.plane, found.sequence, found.localizers_left_out) == (Plane.SAGITTAL, Sequence.T2, 1)


def test_a_series_of_localizers_only_is_still_a_localizer() -> None:
    headers = single_frame_series(volume_array(slices=3, rows=8, columns=8), Grid(), SCOUT)
    found = classify_series(headers)
    assert (found.sequence, found.localizers_left_out) == (Sequence.OTHER, 0)
    assert "Image Type says localizer" in found.reasons


def test_a_sagittal_series_of_a_wanted_contrast_mixing_planes_is_named_with_its_reason() -> None:
    # the same planning image without LOCALIZER in its Image Type cannot be told from a slice
    study = Study()
    t1 = single_frame_series(volume_array(slices=12, rows=30, columns=5), Grid(), T1, study=study, number=1)
    mixed = t2_with_planning_image(study, image_type=("ORIGINAL", "PRIMARY", "M"))
    selection = select_series([t1, mixed])
    assert [c.sequence for c in selection.choices] == [Sequence.T1]
    assert ("series 2 'SAG T2 TSE' set aside: frames in several planes (axial/sagittal): no single plane; "
            "frames mix contrasts (T1, T2): other") in selection.notes
    # and when nothing else is there, the problem names it
    (problem,) = select_series([mixed]).problems
    assert problem.startswith("no sagittal MR series (planes found: oblique); "
                              "series 2 'SAG T2 TSE' set aside: frames in several planes")


def test_series_of_other_planes_or_contrasts_add_no_note() -> None:
    study = Study()
    headers = [
        single_frame_series(volume_array(slices=12, rows=30, columns=5), Grid(), T1, study=study, number=1),
        single_frame_series(volume_array(slices=5, rows=8, columns=8), Grid(orientation=AXIAL),
                            replace(T2, description="AX T2"), study=study, number=3),
        single_frame_series(volume_array(slices=12, rows=30, columns=5), Grid(),
                            replace(T2, tr=3000.0, te=15.0, description="SAG PD"), study=study, number=4),
    ]
    assert select_series(headers).notes == ("no usable sagittal T2: no T2 signal assessment",
                                            "no usable sagittal STIR: no fat-suppressed (STIR) oedema/lesion "
                                            "assessment",
                                            "no usable sagittal T1C: no enhancement assessment")
