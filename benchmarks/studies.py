"""Test objects for the ingest benchmarks, written once per invocation with pydicom.

Noise pixels: the receivers store bytes as received, so content does not
change their work; each set gets fresh UIDs so that no receiver ever sees a
duplicate across runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

ROWS = COLUMNS = 512


def _base(sop_class: str, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    ds.PatientName = "BENCH^INGEST"
    ds.PatientID = "BENCH"
    ds.StudyDate = "20260101"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "SAG T2 BENCH"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def write_mr_study(folder: Path, instances: int, parts: int, seed: int = 0) -> list[Path]:
    """``instances`` single-frame MR objects of one study, split over ``parts`` sub-folders."""
    rng = np.random.default_rng(seed)
    study_uid, series_uid = generate_uid(), generate_uid()
    dirs = [folder / f"part{p}" for p in range(parts)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 4096, size=(8, ROWS, COLUMNS), dtype=np.uint16)
    for i in range(instances):
        sop_uid = generate_uid()
        ds = _base(MRImageStorage, study_uid, series_uid, sop_uid)
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [float(i) * 0.5, -150.0, 150.0]
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 0.5
        ds.PixelData = pixels[i % len(pixels)].tobytes()
        ds.save_as(dirs[i % parts] / f"{i:04d}.dcm", enforce_file_format=True)
    return dirs


def write_enhanced_mr(path: Path, megabytes: int) -> int:
    """One Enhanced MR object of about ``megabytes`` MB of pixel data; its file size."""
    frames = max(1, megabytes * 1024 * 1024 // (ROWS * COLUMNS * 2))
    ds = _base(EnhancedMRImageStorage, generate_uid(), generate_uid(), generate_uid())
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    frame = np.random.default_rng(1).integers(0, 4096, size=(ROWS, COLUMNS), dtype=np.uint16).tobytes()
    ds.PixelData = frame * frames
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size
