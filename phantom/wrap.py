"""Real anatomy as a clinical-looking sagittal series, with implanted abnormalities.

:func:`wrap_volume` is pure (arrays in, :class:`PhantomStudy` out) so
evaluation scripts can call it in-process; :func:`load_volume` reads a shared
NIfTI image, its labels and the sequence named in ``manifest.json`` beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from analysis.volume import LEVEL_LABELS, Sequence, Volume
from phantom.acquisition import ACQUISITIONS, Acquisition, from_description
from phantom.implants import ImplantSpec, implant
from phantom.study import PhantomStudy, sagittal_series

SAGITTAL_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@dataclass(frozen=True)
class SourceVolume:
    image: Volume
    labels: Volume
    sequence: Sequence
    acquisition: Acquisition
    name: str


def load_volume(image_path: Path, labels_path: Path, sequence: Sequence | None = None) -> SourceVolume:
    """Read a shared volume; the sequence comes from ``manifest.json`` beside it unless given."""
    img = sitk.ReadImage(str(image_path))
    lab = sitk.ReadImage(str(labels_path))
    image = Volume(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    labels = Volume(
        sitk.GetArrayFromImage(lab).astype(np.int16), lab.GetSpacing(), lab.GetOrigin(), lab.GetDirection()
    )
    if image.array.shape != labels.array.shape:
        raise ValueError(f"labels shape {labels.array.shape} differs from image shape {image.array.shape}")
    case = image_path.name.removesuffix(".nii.gz").removesuffix("_image")
    text = _manifest_sequence(image_path.parent / "manifest.json", case)
    if sequence is not None:
        acq = ACQUISITIONS[sequence]
    elif text is not None:
        sequence, acq = from_description(text)
    else:
        raise ValueError(f"no manifest entry for {case!r}; pass the sequence explicitly")
    return SourceVolume(image, labels, sequence, acq, case)


def vb1_levels(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.int16]:
    """VB1's labels (100, 101, ... from the top) as VerSe levels, counted up from S1.

    In every VB1 case the lowest labelled body is the first sacral segment: it carries the
    sacrum's tilt and shape and the sacral segments continue below it.
    """
    out = np.zeros(labels.shape, dtype=np.int16)
    present = sorted(int(v) for v in np.unique(labels) if v >= 100)
    for rank, v in enumerate(reversed(present)):
        out[labels == v] = LEVEL_LABELS["S1"] if rank == 0 else LEVEL_LABELS["L5"] + 1 - rank
    return out


def _manifest_sequence(path: Path, case: str) -> str | None:
    if not path.is_file():
        return None
    entries = json.loads(path.read_text())
    for entry in entries:
        if entry.get("case") == case:
            return str(entry["sequence"])
    return None


def wrap_volume(
    image: Volume,
    labels: Volume,
    sequence: Sequence,
    spec: ImplantSpec,
    rng: np.random.Generator,
    slice_step: int = 3,
    acquisition: Acquisition | None = None,
    description: str | None = None,
) -> PhantomStudy:
    """Every ``slice_step``-th sagittal slice as a series, with ``spec`` implanted.

    ``image`` must be a sagittal stack indexed ``[k, j, i]`` (``k`` left-right,
    ``j`` superior->inferior, ``i`` anterior->posterior), as the shared data.
    The returned label map is on the written grid.
    """
    if slice_step < 1:
        raise ValueError(f"slice_step must be >= 1, got {slice_step}")
    if not np.allclose(image.direction, SAGITTAL_DIRECTION, atol=1e-3):
        raise ValueError(
            f"image must be a sagittal stack with direction {SAGITTAL_DIRECTION}, got {image.direction}"
        )
    if labels.array.shape != image.array.shape:
        raise ValueError("labels must be on the image grid")
    pixels = np.asarray(image.array)[::slice_step]
    lab = np.asarray(labels.array)[::slice_step].astype(np.int16)
    si, sj, sk = image.spacing
    spacing_kji = (sk * slice_step, sj, si)
    result = implant({sequence: pixels}, lab, spacing_kji, spec, rng)
    out = result.images[sequence]
    if np.issubdtype(out.dtype, np.floating) or out.min() < 0 or out.max() > 4095:
        out = _to_12bit(out)
    grid = Volume(result.labels, (si, sj, sk * slice_step), image.origin, image.direction)
    desc = description or f"SAG {sequence.value}"
    series = sagittal_series(sequence, out.astype(np.uint16), grid, desc, acquisition)
    truth = {**result.truth_dict(), "generator": "lumbar-sentinel wrap_volume", "slice_step": slice_step}
    return PhantomStudy((series,), grid, truth, grid.with_array(result.lesion_mask))


def _to_12bit(values: npt.NDArray[np.generic]) -> npt.NDArray[np.uint16]:
    v = values.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    return np.rint((v - lo) / max(hi - lo, 1e-9) * 4095).astype(np.uint16)
