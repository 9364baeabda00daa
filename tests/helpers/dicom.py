"""Small, valid MR Image Storage instances for sending to a node under test."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

# Our own root keeps test UIDs recognisable; generate_uid adds a random suffix.
UID_PREFIX = "1.2.826.0.1.3680043.10.1145."


@dataclass(frozen=True)
class StudyUIDs:
    study: str
    series: tuple[str, ...]

    @classmethod
    def new(cls, series_count: int = 1) -> StudyUIDs:
        return cls(generate_uid(UID_PREFIX), tuple(generate_uid(UID_PREFIX) for _ in range(series_count)))


def mr_instance(study_uid: str, series_uid: str, number: int, *, size: int = 16,
                sop_uid: str | None = None, series_number: int = 1) -> Dataset:
    """A sagittal MR slice of ``size`` x ``size`` 12-bit pixels, complete enough for dciodvfy."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid(UID_PREFIX)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "Lumbar Sentinel tests"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = "T2 SAG"
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "TEST0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = "4"
    ds.RepetitionTime = "3000"
    ds.EchoTime = "100"
    ds.EchoTrainLength = "16"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = "4.4"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [f"{number * 4.4:.2f}", "-100", "100"]
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    # one frame of reference per study: a random one per instance made a series that cannot form a volume
    ds.FrameOfReferenceUID = generate_uid(UID_PREFIX, entropy_srcs=[study_uid, "frame of reference"])
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [1.0, 1.0]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = (np.arange(size * size, dtype=np.uint16).reshape(size, size) * 7 + number) % 4096
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_study(folder: Path, count: int, *, series_count: int = 1,
                uids: StudyUIDs | None = None, size: int = 16) -> tuple[StudyUIDs, list[Path]]:
    """Write ``count`` instances per series as DICOM files under ``folder``."""
    uids = uids or StudyUIDs.new(series_count)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, series_uid in enumerate(uids.series, start=1):
        for number in range(1, count + 1):
            ds = mr_instance(uids.study, series_uid, number, size=size, series_number=index)
            path = folder / f"{index:02d}_{number:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return uids, paths


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a DICOM file, without preamble and file meta information."""
    from pynetdicom.dsutils import split_dataset

    _, offset = split_dataset(path)
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read()


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for the file at ``path`` (an empty list when it is valid)."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def write_raw_file(path: Path, body: bytes | Dataset, *, sop_class_uid: str = str(MRImageStorage),
                   sop_instance_uid: str | None = None) -> Path:
    """A DICOM file whose file meta names ``sop_class_uid``/``sop_instance_uid`` and whose data
    set is ``body`` (raw bytes, or a data set encoded explicit VR little endian as it is, even if
    malformed). Sent with ``raw_file_sending`` the node receives exactly ``body``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid or generate_uid(UID_PREFIX))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if isinstance(body, Dataset):
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, body)
        body = buffer.getvalue()
    with path.open("wb") as handle:
        handle.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(handle, meta)  # type: ignore[arg-type]
        handle.write(body)
    return path
