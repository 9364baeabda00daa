"""Write a :class:`PhantomStudy` to a folder: DICOM series, ``truth.json``, ``labels.nii.gz``.

:func:`mid_sagittal_png` draws the sagittal series' middle slices side by side.

Layout of ``out_dir``::

    dicom/<NN>_<series description>/*.dcm   one folder per series
    truth.json                              per-level and study ground truth, series list
    labels.nii.gz                           vertebral-body labels on the sagittal grid
    lesions.nii.gz                          lesion ids (truth.json "lesions") on the same grid
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from PIL import Image, ImageDraw
from pydicom import dcmread

from analysis.volume import Plane, Volume
from phantom.study import PhantomStudy
from phantom.writer import COMPRESSIONS, StudyIdentity, write_series


def write_labels(labels: Volume, path: Path) -> None:
    img = sitk.GetImageFromArray(np.asarray(labels.array, dtype=np.int16))
    img.SetSpacing(labels.spacing)
    img.SetOrigin(labels.origin)
    img.SetDirection(labels.direction)
    sitk.WriteImage(img, str(path), useCompression=True)


def write_outputs(
    study: PhantomStudy,
    out_dir: Path,
    identity: StudyIdentity,
    enhanced: bool = False,
    compression: str = "none",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write everything; returns the truth document that went into ``truth.json``."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}, got {compression!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    series_info = []
    for number, series in enumerate(study.series, start=1):
        paths = write_series(identity, series, number, out_dir / "dicom", enhanced, compression)
        first = dcmread(paths[0], stop_before_pixels=True)
        series_info.append(
            {
                "series_number": number,
                "series_instance_uid": str(first.SeriesInstanceUID),
                "description": series.description,
                "sequence": series.sequence.value,
                "plane": series.plane.value,
                "sop_class_uid": str(first.SOPClassUID),
                "transfer_syntax_uid": str(first.file_meta.TransferSyntaxUID),
                "instances": len(paths),
                "frames": int(series.pixels.shape[0]),
                "folder": str(paths[0].parent.relative_to(out_dir)),
            }
        )
    write_labels(study.labels, out_dir / "labels.nii.gz")
    if study.lesions is not None:
        write_labels(study.lesions, out_dir / "lesions.nii.gz")
    truth = {
        "study_instance_uid": identity.study_uid,
        "frame_of_reference_uid": identity.frame_of_reference_uid,
        "note": "Synthetic ground truth for testing a triage aid; not a diagnosis.",
        **study.truth,
        "series": series_info,
        "labels_file": "labels.nii.gz",
        "lesions_file": "lesions.nii.gz" if study.lesions is not None else None,
        **(extra or {}),
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, default=str))
    return truth


def _grey(frame: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    values = frame.astype(np.float64)
    hi = float(np.percentile(values, 99.95)) or 1.0
    return np.asarray(np.clip(values / hi * 255.0, 0, 255), dtype=np.uint8)


def mid_sagittal_png(
    study: PhantomStudy, path: Path, slice_index: int | None = None, scale: float = 1.5
) -> None:
    """Write the middle slice of every sagittal series, left to right, labelled with its description."""
    panels = []
    for series in study.series:
        if series.plane != Plane.SAGITTAL:
            continue
        k = series.pixels.shape[0] // 2 if slice_index is None else slice_index
        img = Image.fromarray(_grey(series.pixels[k]))
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        ImageDraw.Draw(img).text((6, 4), series.description, fill=255)
        panels.append(img)
    if not panels:
        raise ValueError("study has no sagittal series")
    canvas = Image.new(
        "L", (sum(p.width for p in panels) + 4 * (len(panels) - 1), max(p.height for p in panels))
    )
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
