"""Plane and contrast from acquisition parameters; the description only breaks ties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from analysis.volume import Plane, Sequence
from node.study import StudyInputError, classify_series, plane_from_orientation
from tests.study.factory import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    STIR,
    T1,
    T1C,
    T2,
    Acquisition,
    Grid,
    enhanced_mr,
    single_frame_series,
    volume_array,
)

ARRAY = volume_array(slices=3, rows=4, columns=4)


def classic(acq: Acquisition, grid: Grid | None = None) -> list[Dataset]:
    return single_frame_series(ARRAY, grid or Grid(), acq)


def _rotated(degrees: float) -> tuple[float, ...]:
    """Sagittal tilted about the vertical (S-I) axis by ``degrees``."""
    a = np.deg2rad(degrees)
    return (np.sin(a), np.cos(a), 0.0, 0.0, 0.0, -1.0)


@pytest.mark.parametrize(
    ("orientation", "plane"),
    [
        (SAGITTAL, Plane.SAGITTAL),
        ((0.0, -1.0, 0.0, 0.0, 0.0, -1.0), Plane.SAGITTAL),
        (AXIAL, Plane.AXIAL),
        (CORONAL, Plane.CORONAL),
        (_rotated(25.0), Plane.SAGITTAL),
        (_rotated(45.0), Plane.OBLIQUE),
        (_rotated(70.0), Plane.CORONAL),
    ],
)
def test_plane_from_orientation(orientation: tuple[float, ...], plane: Plane) -> None:
    assert plane_from_orientation(orientation) is plane


def test_plane_rejects_bad_orientation() -> None:
    with pytest.raises(ValueError, match="orientation"):
        plane_from_orientation((1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="parallel"):
        plane_from_orientation((1.0, 0.0, 0.0, 1.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("acq", "expected"),
    [
        (replace(T1, description="T2 SAG"), Sequence.T1),
        (replace(T1, description=""), Sequence.T1),
        (replace(T2, description="SAG T1"), Sequence.T2),
        (replace(STIR, description="T2 TSE"), Sequence.STIR),
        (replace(STIR, scanning=("SE",), variant=("SK", "MP"), description=""), Sequence.STIR),
        (replace(T1C, description="SAG T1 pre"), Sequence.T1C),
        (replace(T1, agent="NONE", description="SAG T1 POST GD"), Sequence.T1),
        (replace(T1, description="sag t1 +c"), Sequence.T1C),
        (replace(T1, description="SAG T1 fs"), Sequence.T1),
        (replace(T2, agent="GADOBUTROL"), Sequence.T2),
        (replace(STIR, ti=2500.0, tr=9000.0, te=120.0, description="SAG STIR"), Sequence.OTHER),
        (replace(STIR, ti=800.0, tr=2200.0, te=9.0, description=""), Sequence.T1),
        (replace(T1, tr=3000.0, te=15.0, description="SAG T1"), Sequence.OTHER),
        (replace(T1, tr=600.0, te=20.0, flip=25.0, scanning=("GR",), description="SAG T1"), Sequence.OTHER),
        (replace(T1, tr=10.0, te=4.0, flip=12.0, scanning=("GR",), description=""), Sequence.T1),
        (replace(T1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), Sequence.OTHER),
        (replace(T1C, image_type=("DERIVED", "SECONDARY", "SUB")), Sequence.OTHER),
        (replace(T2, scanning=("EP",), description="SAG T2"), Sequence.OTHER),
        (replace(T1, tr=5.0, te=2.5, scanning=("GR",), variant=("SS",), description="T1"), Sequence.OTHER),
    ],
    ids=lambda v: v.description if isinstance(v, Acquisition) else str(v),
)
def test_classic_parameters_decide(acq: Acquisition, expected: Sequence) -> None:
    result = classify_series(classic(acq))
    assert result.sequence is expected, result.reasons
    assert result.plane is Plane.SAGITTAL


@pytest.mark.parametrize("flag", ["DIXON", "IN_PHASE", "OPP_PHASE", "WATER", "FAT"])
def test_dixon_from_image_type(flag: str) -> None:
    acq = replace(T1, tr=6.0, te=2.4, scanning=("GR",), image_type=("ORIGINAL", "PRIMARY", "M", flag),
                  description="SAG T1")
    result = classify_series(classic(acq))
    assert result.sequence is Sequence.DIXON
    assert flag in result.explanation


@pytest.mark.parametrize(
    ("acq", "expected", "why"),
    [
        (replace(T1, tr=1500.0, te=20.0, description="SAG T1"), Sequence.T1, "between the T1 and T2 bands"),
        (replace(T1, tr=1500.0, te=20.0, description="SAG T1 POST"), Sequence.T1C, "post-contrast"),
        (replace(T1, tr=1500.0, te=20.0, agent="NONE", description="T1 POST"), Sequence.T1, "pre-contrast"),
        (replace(T1, tr=1500.0, te=20.0, description=""), Sequence.OTHER, "names no contrast"),
        (replace(T1, tr=None, te=None, description="STIR SAG"), Sequence.STIR, "TR missing"),
        (replace(STIR, ti=None, description="sag stir"), Sequence.STIR, "without Inversion Time"),
        (replace(T1, tr=None, te=None, description="Dixon W"), Sequence.DIXON, "decides"),
        (replace(T1, tr=None, te=None, description="T2* MEDIC"), Sequence.OTHER, "decides"),
    ],
)
def test_description_breaks_ties_only(acq: Acquisition, expected: Sequence, why: str) -> None:
    result = classify_series(classic(acq))
    assert result.sequence is expected, result.reasons
    assert why in result.explanation


def test_reasons_are_stated() -> None:
    result = classify_series(classic(replace(T1C, description="T2 SAG")))
    assert result.reasons == (
        "slice normal along left-right: sagittal",
        "TR 550 ms < 1000 and TE 12 ms < 30: T1-weighted",
        "Contrast/Bolus Agent 'GADOBUTROL': post-contrast",
    )
    assert result.parameters.repetition_time == 550.0


def test_plane_of_axial_and_mixed_series() -> None:
    assert classify_series(classic(T2, Grid(orientation=AXIAL))).plane is Plane.AXIAL
    mixed = classic(T1) + classic(T1, Grid(orientation=CORONAL))
    result = classify_series(mixed)
    assert result.plane is Plane.OBLIQUE
    assert "several planes" in result.explanation
    with pytest.raises(StudyInputError, match="headers"):
        classify_series([])


@pytest.mark.parametrize(
    ("acq", "expected"),
    [
        (replace(T1, description="T2 SAG"), Sequence.T1),
        (replace(T2, description="T1 SAG"), Sequence.T2),
        (replace(STIR, description=""), Sequence.STIR),
        (replace(T1C, description="SAG T1"), Sequence.T1C),
        (replace(STIR, ti=2200.0, tr=9000.0, te=110.0, description="STIR"), Sequence.OTHER),
    ],
)
def test_enhanced_mr_functional_groups(acq: Acquisition, expected: Sequence) -> None:
    ds = enhanced_mr(ARRAY, Grid(), acq)
    # No classic attributes at the top level: only the functional groups carry the parameters.
    for keyword in ("RepetitionTime", "EchoTime", "InversionTime", "ScanningSequence", "ContrastBolusAgent"):
        assert keyword not in ds
    result = classify_series([ds])
    assert result.sequence is expected, result.reasons
    assert result.plane is Plane.SAGITTAL


def test_enhanced_mr_per_frame_group_overrides_shared() -> None:
    ds = enhanced_mr(ARRAY, Grid(), replace(T1, tr=3500.0, description="SAG T1"))
    for item in ds.PerFrameFunctionalGroupsSequence:
        echo = Dataset()
        echo.EffectiveEchoTime = 100.0
        item.MREchoSequence = DicomSequence([echo])
    assert classify_series([ds]).sequence is Sequence.T2


def test_enhanced_mr_frames_of_different_contrast() -> None:
    ds = enhanced_mr(ARRAY, Grid(), replace(T1, tr=3500.0, description="multi echo"))
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        echo = Dataset()
        echo.EffectiveEchoTime = 15.0 if n % 2 else 100.0
        item.MREchoSequence = DicomSequence([echo])
    result = classify_series([ds])
    assert result.sequence is Sequence.OTHER
    assert "frames mix contrasts" in result.explanation


def test_enhanced_mr_dixon_frame_type_and_acquisition_contrast() -> None:
    ds = enhanced_mr(ARRAY, Grid(), replace(T1, description="SAG T1"))
    ds.SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence[0].FrameType = [
        "ORIGINAL", "PRIMARY", "VOLUME", "WATER"
    ]
    assert classify_series([ds]).sequence is Sequence.DIXON
    ambiguous = enhanced_mr(ARRAY, Grid(), replace(T1, tr=1500.0, te=20.0, description="T2"))
    ambiguous.SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence[0].AcquisitionContrast = "T1"
    result = classify_series([ambiguous])
    assert result.sequence is Sequence.T1
    assert "Acquisition Contrast T1" in result.explanation


def test_enhanced_mr_contrast_not_administered() -> None:
    ds = enhanced_mr(ARRAY, Grid(), replace(T1C, description="SAG T1 +C"))
    ds.SharedFunctionalGroupsSequence[0].ContrastBolusUsageSequence[0].ContrastBolusAgentAdministered = "NO"
    assert classify_series([ds]).sequence is Sequence.T1


def test_enhanced_mr_gradient_echo_from_echo_pulse_sequence() -> None:
    t2_star = replace(T1, tr=600.0, te=18.0, flip=25.0, scanning=("GR",), description="SAG T1")
    ds = enhanced_mr(ARRAY, Grid(), t2_star)
    assert ds.EchoPulseSequence == "GRADIENT"
    result = classify_series([ds])
    assert result.sequence is Sequence.OTHER
    assert "T2*-weighted" in result.explanation


def test_invalid_orientation_gives_no_plane_but_still_a_contrast() -> None:
    headers = classic(T2)
    for ds in headers:
        ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    result = classify_series(headers)
    assert (result.plane, result.sequence) == (Plane.OBLIQUE, Sequence.T2)
    assert "invalid Image Orientation (Patient)" in result.explanation
