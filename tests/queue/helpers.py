"""Shared pieces of the queue tests: studies, DICOM series on disk, waiting for conditions."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Instance, JobEvent, Series, Study, StudyStatus

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

# Acquisition parameters of the series kinds the tests write.
SERIES_KINDS: dict[str, dict[str, object]] = {
    "T1": {"RepetitionTime": 550, "EchoTime": 10, "ScanningSequence": "SE",
           "SeriesDescription": "SAG T1 TSE"},
    "T2": {"RepetitionTime": 3500, "EchoTime": 100, "ScanningSequence": "SE", "SeriesDescription": "SAG T2"},
    "STIR": {"RepetitionTime": 4000, "EchoTime": 50, "InversionTime": 150, "ScanningSequence": ["SE", "IR"],
             "SeriesDescription": "SAG STIR"},
    "T1C": {"RepetitionTime": 550, "EchoTime": 10, "ScanningSequence": "SE", "ContrastBolusAgent": "Gadovist",
            "SeriesDescription": "SAG T1 FS"},
}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until true; the timeout only guards against a hang."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def add_study(session: Session, uid: str, last_received_at: datetime,
              status: StudyStatus = StudyStatus.RECEIVING) -> int:
    study = Study(study_instance_uid=uid, first_received_at=last_received_at,
                  last_received_at=last_received_at, status=status)
    session.add(study)
    session.flush()
    return study.id


def events_of(sessions: sessionmaker[Session], job_id: int) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent.event).where(JobEvent.job_id == job_id)
                                    .order_by(JobEvent.id)))


def write_series(root: Path, study_uid: str, kind: str, orientation: tuple[float, ...],
                 slices: int = 3, modality: str = "MR") -> tuple[str, list[Path]]:
    """A small single-frame MR series under ``root``; returns its UID and files."""
    series_uid = generate_uid()
    folder = root / study_uid / series_uid
    folder.mkdir(parents=True)
    paths = []
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = list(orientation)
        normal = np.cross(orientation[:3], orientation[3:])
        ds.ImagePositionPatient = [float(v) for v in normal * 4.0 * index]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 4.0
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
        for keyword, value in SERIES_KINDS[kind].items():
            setattr(ds, keyword, value)
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return series_uid, paths


def register_series(session: Session, root: Path, study_id: int, series_uid: str, paths: list[Path],
                    modality: str = "MR") -> int:
    series = Series(study_id=study_id, series_instance_uid=series_uid, modality=modality)
    session.add(series)
    session.flush()
    for path in paths:
        data = path.read_bytes()
        session.add(Instance(
            series_id=series.id, sop_instance_uid=path.stem, sop_class_uid=MRImageStorage,
            transfer_syntax_uid=ExplicitVRLittleEndian, path=str(path.relative_to(root)),
            size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        ))
    session.flush()
    return series.id
