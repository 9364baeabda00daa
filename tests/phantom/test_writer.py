"""Every DICOM object the phantom writes reads back losslessly and passes dciodvfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import EnhancedMRImageStorage, MRImageStorage

from analysis.volume import Plane, Sequence
from phantom.output import write_outputs
from phantom.study import PhantomStudy
from phantom.writer import COMPRESSIONS, StudyIdentity, write_series
from tests.phantom.conftest import dciodvfy_errors

IDENTITY = StudyIdentity.synthetic(5)


def _by_sequence(study: PhantomStudy, seq: Sequence, plane: Plane = Plane.SAGITTAL) -> int:
    return next(n for n, s in enumerate(study.series) if s.sequence == seq and s.plane == plane)


def test_single_frame_study_is_valid_and_lossless(abnormal_study: PhantomStudy, tmp_path: Path) -> None:
    truth = write_outputs(abnormal_study, tmp_path, IDENTITY)
    assert len(truth["series"]) == 5
    frames_of_reference = set()
    for number, series in enumerate(abnormal_study.series, start=1):
        folder = tmp_path / truth["series"][number - 1]["folder"]
        files = sorted(folder.glob("*.dcm"))
        assert len(files) == series.pixels.shape[0]
        for index in (0, len(files) // 2):
            assert dciodvfy_errors(files[index]) == [], files[index]
            ds = dcmread(files[index])
            assert ds.SOPClassUID == MRImageStorage
            assert np.array_equal(ds.pixel_array, series.pixels[index])
            assert ds.StudyInstanceUID == IDENTITY.study_uid
            frames_of_reference.add(ds.FrameOfReferenceUID)
            assert float(ds.SliceThickness) == series.slice_thickness
            assert list(map(float, ds.ImagePositionPatient)) == pytest.approx(
                series.positions[index], abs=1e-3
            )
    assert len(frames_of_reference) == 1


def test_acquisition_tags_tell_the_sequences_apart(abnormal_study: PhantomStudy, tmp_path: Path) -> None:
    write_outputs(abnormal_study, tmp_path, IDENTITY)
    first = {p.parent.name: dcmread(p) for p in tmp_path.glob("dicom/*/0001.dcm")}
    t1, t2, stir, t1c, ax = (first[k] for k in sorted(first))
    assert float(t1.RepetitionTime) < 1000 and float(t1.EchoTime) < 30
    assert float(t2.RepetitionTime) > 2000 and float(t2.EchoTime) > 60
    assert "IR" in stir.ScanningSequence and 100 <= float(stir.InversionTime) <= 250
    assert t1c.ContrastBolusAgent and "ContrastBolusAgent" not in t1
    assert [round(float(v)) for v in t1.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert [round(float(v)) for v in ax.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert 3.0 <= float(t1.SliceThickness) <= 4.0 and 0.5 <= float(t1.PixelSpacing[0]) <= 1.3
    assert t1.PatientName.family_name == "PHANTOM" and t1.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("compression", ["none", "rle", "j2k", "jpegls", "jpeg"])
def test_enhanced_mr_is_valid_and_lossless(
    abnormal_study: PhantomStudy, tmp_path: Path, compression: str
) -> None:
    for seq, plane in ((Sequence.STIR, Plane.SAGITTAL), (Sequence.T1C, Plane.SAGITTAL)):
        n = _by_sequence(abnormal_study, seq, plane)
        series = abnormal_study.series[n]
        [path] = write_series(IDENTITY, series, n + 1, tmp_path, enhanced=True, compression=compression)
        assert dciodvfy_errors(path) == []
        ds = dcmread(path)
        assert ds.SOPClassUID == EnhancedMRImageStorage
        assert ds.file_meta.TransferSyntaxUID == COMPRESSIONS[compression]
        assert int(ds.NumberOfFrames) == series.pixels.shape[0]
        assert np.array_equal(ds.pixel_array, series.pixels)
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert float(shared.MRTimingAndRelatedParametersSequence[0].RepetitionTime) > 0
        last = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0].ImagePositionPatient
        assert list(map(float, last)) == pytest.approx(series.positions[-1], abs=1e-3)
        if seq == Sequence.STIR:
            assert shared.MRModifierSequence[0].InversionRecovery == "YES"
        else:
            assert "ContrastBolusAgentSequence" in ds


@pytest.mark.parametrize("compression", ["rle", "j2k", "jpegls", "jpeg"])
def test_compressed_single_frame_is_valid_and_lossless(
    abnormal_study: PhantomStudy, tmp_path: Path, compression: str
) -> None:
    n = _by_sequence(abnormal_study, Sequence.T2, Plane.AXIAL)
    series = abnormal_study.series[n]
    paths = write_series(IDENTITY, series, n + 1, tmp_path, compression=compression)
    for index in (0, len(paths) - 1):
        assert dciodvfy_errors(paths[index]) == []
        ds = dcmread(paths[index])
        assert ds.file_meta.TransferSyntaxUID == COMPRESSIONS[compression]
        assert np.array_equal(ds.pixel_array, series.pixels[index])


def test_same_seed_same_uids() -> None:
    assert StudyIdentity.synthetic(9) == StudyIdentity.synthetic(9)
    assert StudyIdentity.synthetic(9).study_uid != StudyIdentity.synthetic(10).study_uid
