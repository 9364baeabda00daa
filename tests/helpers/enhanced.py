"""Enhanced MR test studies: the `phantom --enhanced` study with a series split into several objects."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.helpers.node import CLI


def enhanced_study_with_split_t2(folder: Path, seed: int = 11) -> Path:
    """``phantom --enhanced`` under ``folder``, its T2 object split into two halves of its frames
    (legal: a series may hold several multi-frame objects); the study's DICOM folder."""
    made = subprocess.run([str(CLI), "phantom", str(folder), "--seed", str(seed), "--enhanced"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert made.returncode == 0, made.stderr
    dicom = folder / "dicom"
    [path] = [p for p in dicom.rglob("*.dcm")
              if "T2" in str(dcmread(p, stop_before_pixels=True).SeriesDescription)]
    ds = dcmread(path)
    frames = ds.pixel_array
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    half = len(groups) // 2
    for part, (start, stop) in enumerate(((0, half), (half, len(groups)))):
        piece = copy.deepcopy(ds)
        piece.SOPInstanceUID = piece.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        piece.InstanceNumber = part + 1
        piece.PerFrameFunctionalGroupsSequence = groups[start:stop]
        piece.NumberOfFrames = stop - start
        piece.PixelData = np.ascontiguousarray(frames[start:stop]).tobytes()
        piece.save_as(path.with_name(f"{piece.SOPInstanceUID}.dcm"))
    path.unlink()
    return dicom
