"""The cases the vertebral-body analysis is trained and evaluated on.

- Shared real cases: :func:`load_case` reads the NIfTI directly and keeps every
  3rd sagittal slice (training, ``--no-dicom``); :func:`load_case_dicom` wraps
  the volume as a clinical sagittal series with 3 mm slices
  (:func:`phantom.wrap.wrap_volume`), writes it as DICOM and reads it back
  as the node does, so the evaluation sees what the node's analysis sees.
- Phantoms: :mod:`phantom_cases`.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from analysis.sitk_adapter import take_every_nth_slice, volume_from_image
from analysis.volume import Sequence, Volume
from node.study import group_dicom_folder, read_series
from phantom.implants import ImplantSpec
from phantom.study import ImageSeries
from phantom.wrap import load_volume, vb1_levels, wrap_volume
from phantom.writer import StudyIdentity, write_study

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real-lumbar-mri"
WEIGHTS = REPO / "analysis" / "vertebrae" / "weights"
SLICE_STEP = 3  # 1 mm -> 3 mm sagittal slices


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    group: str  # patient: cases of one group never go to different folds
    volumes: dict[Sequence, Volume]
    truth: Volume  # label map (VerSe numbering) on the grid of the first volume, or resampled onto it
    levels_known: bool  # truth names levels (VB2, VB3, phantoms)


def sequence_of(description: str) -> Sequence:
    d = description.lower()
    if "stir" in d or "tirm" in d:
        return Sequence.STIR
    if "t1" in d:
        return Sequence.T1
    if "water-fat" in d or "dixon" in d:
        return Sequence.DIXON
    if "t2" in d:
        return Sequence.T2
    return Sequence.OTHER


def verse_truth(labels: np.ndarray, dataset: str) -> np.ndarray:
    """Truth labels in VerSe numbering; VB1 (100.. from the top) is counted up from S1.

    In every VB1 case the lowest labelled body is the first sacral segment: it
    carries the sacrum's tilt and shape, the sacral segments continue below it,
    and both the networks and the earlier pixel classifier (trained on VB2/VB3,
    whose L5 is known) name the body above it L5 on every VB1 case (mid-sagittal
    renderings checked). So 100+n-1 is S1 and 100+n-2 is L5. Used for training
    and as a labelling reference only; the evaluation reports name accuracy on
    VB2/VB3.
    """
    if dataset != "VB1":
        return labels.astype(np.int16)
    return vb1_levels(labels)


def list_cases(root: Path = SHARED_REAL) -> list[dict[str, str]]:
    manifest = json.loads((root / "manifest.json").read_text())
    return [
        {
            "case": m["case"],
            "dataset": m["dataset"],
            "sequence": m["sequence"],
            "group": m.get("same_patient_group") or m["case"],
        }
        for m in manifest
    ]


def load_case(entry: dict[str, str], root: Path = SHARED_REAL, step: int = SLICE_STEP) -> Case:
    """Read one shared case, keep every ``step``-th sagittal slice, return volume and truth."""
    image = volume_from_image(sitk.ReadImage(str(root / f"{entry['case']}_image.nii.gz")))
    labels = volume_from_image(sitk.ReadImage(str(root / f"{entry['case']}_labels.nii.gz")))
    image = take_every_nth_slice(image, step, axis=0)
    labels = take_every_nth_slice(labels, step, axis=0)
    truth = labels.with_array(verse_truth(np.asarray(labels.array), entry["dataset"]))
    return Case(
        name=entry["case"],
        dataset=entry["dataset"],
        group=entry["group"],
        volumes={sequence_of(entry["sequence"]): image},
        truth=truth,
        levels_known=entry["dataset"] in ("VB2", "VB3"),
    )


def through_dicom(series: list[ImageSeries], seed: int) -> dict[Sequence, Volume]:
    """Write series as a DICOM study, read it back as the node does: one Volume per series."""
    with tempfile.TemporaryDirectory(prefix="lsent-eval-") as tmp:
        out: dict[Sequence, Volume] = {}
        for n, item in enumerate(series):
            folder = Path(tmp) / f"s{n}"
            write_study(StudyIdentity.synthetic(seed), [item], folder)
            (study,) = group_dicom_folder(folder).studies
            (files,) = study.series
            out[item.sequence] = read_series(files.paths, headers=files.headers).volume
        return out


def load_case_dicom(entry: dict[str, str], root: Path = SHARED_REAL, step: int = SLICE_STEP) -> Case:
    """A shared case wrapped as a DICOM sagittal series with ``step`` mm slices and read back."""
    src = load_volume(root / f"{entry['case']}_image.nii.gz", root / f"{entry['case']}_labels.nii.gz")
    study = wrap_volume(
        src.image, src.labels, src.sequence, ImplantSpec(), np.random.default_rng(0), slice_step=step,
        acquisition=src.acquisition, description=f"SAG {entry['sequence']}",
    )  # fmt: skip
    volumes = through_dicom(list(study.series), zlib.crc32(entry["case"].encode()) % 10_000)
    truth = study.labels.with_array(verse_truth(np.asarray(study.labels.array), entry["dataset"]))
    return Case(
        name=entry["case"],
        dataset=entry["dataset"],
        group=entry["group"],
        volumes=volumes,
        truth=truth,
        levels_known=entry["dataset"] in ("VB2", "VB3"),
    )


def fold_of_groups(entries: list[dict[str, str]], n_folds: int) -> dict[str, int]:
    """Deterministic patient-grouped folds, datasets spread over folds."""
    groups: list[str] = []
    for e in sorted(entries, key=lambda e: (e["dataset"], e["case"])):
        if e["group"] not in groups:
            groups.append(e["group"])
    return {g: i % n_folds for i, g in enumerate(groups)}
