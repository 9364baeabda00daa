"""Write :class:`~phantom.study.ImageSeries` as DICOM MR objects.

Single-frame MR Image Storage or Enhanced MR Image Storage (``enhanced``
module), uncompressed or lossless-compressed (RLE, JPEG-LS, JPEG 2000 with
pydicom's encoders; JPEG Lossless SV1 through DCMTK ``dcmcjpeg``).
The identity and the modules every object shares are in ``dataset``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from analysis.volume import Plane
from phantom.acquisition import ACQUISITIONS, Acquisition
from phantom.dataset import StudyIdentity, base_dataset, pixel_module, window
from phantom.enhanced import enhanced_mr
from phantom.study import ImageSeries

IMPLEMENTATION_UID = UID(generate_uid(entropy_srcs=["lumbar-sentinel phantom writer"]))
COMPRESSIONS: dict[str, UID] = {
    "none": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "jpeg": JPEGLosslessSV1,
}


class PhantomWriteError(RuntimeError):
    """Writing a phantom object failed (encoder or DCMTK missing, bad output folder)."""


def slice_location(series: ImageSeries, index: int) -> float:
    o = np.asarray(series.orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    return float(np.dot(normal, series.positions[index]))


def _single_frame(
    identity: StudyIdentity, series: ImageSeries, series_number: int, index: int, acq: Acquisition
) -> Dataset:
    ds = base_dataset(identity, series, series_number, MRImageStorage)
    ds.SOPInstanceUID = identity.uid("instance", series_number, index)
    ds.InstanceNumber = index + 1
    ds.ImageType = list(acq.image_type)
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = ds.SeriesTime
    ds.AcquisitionNumber = 1
    ds.PixelSpacing = [round(v, 6) for v in series.pixel_spacing]
    ds.ImageOrientationPatient = [round(v, 6) for v in series.orientation]
    ds.ImagePositionPatient = [round(v, 4) for v in series.positions[index]]
    ds.SliceThickness = series.slice_thickness
    ds.SpacingBetweenSlices = series.slice_spacing
    ds.SliceLocation = round(slice_location(series, index), 4)
    ds.ScanningSequence = list(acq.scanning_sequence)
    ds.SequenceVariant = list(acq.sequence_variant)
    ds.ScanOptions = list(acq.scan_options) if acq.scan_options else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = acq.sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = acq.repetition_ms
    ds.EchoTime = acq.echo_ms
    ds.EchoTrainLength = acq.echo_train
    if acq.inversion_ms is not None:
        ds.InversionTime = acq.inversion_ms
    ds.NumberOfAverages = 2
    ds.ImagingFrequency = 63.87
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.FlipAngle = acq.flip_deg
    ds.ReceiveCoilName = "SPINE"
    ds.TransmitCoilName = "BODY"
    ds.PercentSampling = 100.0
    ds.PercentPhaseFieldOfView = 100.0
    ds.PixelBandwidth = 190.0
    ds.InPlanePhaseEncodingDirection = "ROW" if series.plane == Plane.SAGITTAL else "COL"
    ds.AcquisitionMatrix = [0, series.pixels.shape[2], series.pixels.shape[1], 0]
    ds.PatientOrientation = ""
    if acq.agent:
        ds.ContrastBolusAgent = acq.agent
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = 15.0
    frame = series.pixels[index]
    pixel_module(ds, frame.shape[0], frame.shape[1])
    ds.WindowCenter, ds.WindowWidth = window(series.pixels)
    ds.PixelData = np.ascontiguousarray(frame, dtype=np.uint16).tobytes()
    return ds


def save(ds: Dataset, path: Path, compression: str) -> None:
    """Write with File Meta; compress losslessly in the chosen transfer syntax."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}, got {compression!r}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LSENT_PHANTOM"
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    if compression in ("none", "jpeg"):
        dcmwrite(path, ds, enforce_file_format=True)
        if compression == "jpeg":
            _dcmcjpeg(path)
        return
    plugin = "pylibjpeg" if compression == "j2k" else ""
    try:
        ds.compress(COMPRESSIONS[compression], encoding_plugin=plugin, generate_instance_uid=False)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise PhantomWriteError(f"cannot encode {compression}: {exc}") from exc
    dcmwrite(path, ds, enforce_file_format=True)


def _dcmcjpeg(path: Path) -> None:
    exe = shutil.which("dcmcjpeg")
    if exe is None:
        raise PhantomWriteError("JPEG Lossless needs DCMTK's dcmcjpeg on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.dcm"
        proc = subprocess.run(
            [exe, "--encode-lossless-sv1", "--true-lossless", str(path), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PhantomWriteError(f"dcmcjpeg failed on {path.name}: {proc.stderr.strip()}")
        shutil.move(out, path)


def write_series(
    identity: StudyIdentity,
    series: ImageSeries,
    series_number: int,
    out_dir: Path,
    enhanced: bool = False,
    compression: str = "none",
) -> list[Path]:
    """Write one series into ``out_dir/<series_number>_<description>/``; returns the files."""
    acq = series.acquisition or ACQUISITIONS[series.sequence]
    folder = out_dir / f"{series_number:02d}_{series.description.replace(' ', '_')}"
    if enhanced:
        path = folder / "enhanced.dcm"
        save(enhanced_mr(identity, series, series_number, acq), path, compression)
        return [path]
    paths = []
    for index in range(series.pixels.shape[0]):
        path = folder / f"{index + 1:04d}.dcm"
        save(_single_frame(identity, series, series_number, index, acq), path, compression)
        paths.append(path)
    return paths


def write_study(
    identity: StudyIdentity,
    series: Seq[ImageSeries],
    out_dir: Path,
    enhanced: bool = False,
    compression: str = "none",
) -> list[Path]:
    paths: list[Path] = []
    for number, item in enumerate(series, start=1):
        paths += write_series(identity, item, number, out_dir, enhanced, compression)
    return paths
