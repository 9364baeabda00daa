"""Write :class:`~phantom.study.ImageSeries` as DICOM MR objects.

Single-frame MR Image Storage or Enhanced MR Image Storage (``enhanced``
module), uncompressed or lossless-compressed (RLE, JPEG-LS, JPEG 2000 with
pydicom's encoders; JPEG Lossless SV1 through DCMTK ``dcmcjpeg``).
Identities are synthetic and anonymous; UIDs derive from a seed so the same
seed writes the same study.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime, timedelta
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


@dataclass(frozen=True)
class StudyIdentity:
    """Synthetic, anonymous patient and study attributes shared by every object of a study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    frame_of_reference_uid: str
    accession: str
    study_id: str
    when: datetime
    uid_seed: str

    @classmethod
    def synthetic(cls, seed: int, when: datetime | None = None, content: str = "") -> StudyIdentity:
        """The identity of phantom ``seed``; ``content`` enters every UID.

        ``content`` is a digest of everything else that shapes the study
        (implants, sequences, grid, source volume...): two studies drawn with
        the same seed but other content must not share UIDs, or a node keeps
        the first one's instances and ignores the second's.
        """
        rng = np.random.default_rng(seed)
        uid_seed = f"{seed}/{content}" if content else str(seed)
        number = int(rng.integers(10_000, 99_999))
        when = when or datetime(2026, 1, 1, 9, 0, 0) + timedelta(minutes=int(rng.integers(0, 525_600)))
        return cls(
            patient_name=f"PHANTOM^LUMBAR^{number}",
            patient_id=f"LSPH{number}",
            birth_date=f"19{int(rng.integers(40, 85))}0101",
            sex=str(rng.choice(["F", "M"])),
            study_uid=generate_uid(entropy_srcs=["study", uid_seed]),
            frame_of_reference_uid=generate_uid(entropy_srcs=["for", uid_seed]),
            accession=f"PH{number}",
            study_id=str(number),
            when=when,
            uid_seed=uid_seed,
        )

    def uid(self, *parts: object) -> str:
        return generate_uid(entropy_srcs=[self.uid_seed, *(str(p) for p in parts)])


def base_dataset(identity: StudyIdentity, series: ImageSeries, series_number: int, sop_class: str) -> Dataset:
    """Patient, study, series, frame of reference and equipment modules."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom; no real patient"
    ds.StudyInstanceUID = identity.study_uid
    ds.StudyDate = identity.when.strftime("%Y%m%d")
    ds.StudyTime = identity.when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession
    ds.StudyDescription = "MR LUMBAR SPINE"
    ds.Modality = "MR"
    ds.SeriesInstanceUID = identity.uid("series", series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series.description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = (identity.when + timedelta(minutes=4 * series_number)).strftime("%H%M%S")
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Lumbar Sentinel"
    ds.ManufacturerModelName = "Phantom"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "lumbar-sentinel phantom 1"
    ds.InstitutionName = "Synthetic"
    ds.StationName = "PHANTOM"
    ds.MagneticFieldStrength = 1.5
    return ds


def pixel_module(ds: Dataset, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def window(pixels: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(pixels, [1.0, 99.9])
    return float(round((lo + hi) / 2)), float(max(round(hi - lo), 1))


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
        from phantom.enhanced import enhanced_mr

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
