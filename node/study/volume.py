"""Read a stored MR series (a list of files) into an :class:`analysis.volume.Volume`.

Headers are read first without pixel data, the geometry is checked on them,
and only then is each file's pixel data decoded (pydicom with the pylibjpeg
plugins: JPEG Lossless, JPEG-LS, JPEG 2000, RLE; deflate by pydicom itself).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from analysis.volume import Volume
from node.study.errors import SeriesError
from node.study.frames import FrameHeader, photometric_interpretation, series_frame_headers
from node.study.geometry import GeometryTolerance, StackGeometry, stack_geometry


@dataclass(frozen=True)
class SliceSource:
    """Where slice ``k`` of a volume came from (for references back to the stored series)."""

    path: Path
    sop_instance_uid: str
    frame_number: int | None  # 1-based frame of a multi-frame object; None for single-frame


@dataclass(frozen=True, eq=False)
class SeriesVolume:
    """A volume and the identity of the stored series it was built from."""

    volume: Volume
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    slices: tuple[SliceSource, ...]  # index k of the volume -> source frame


def _stored_dtype(ds: Dataset) -> np.dtype[np.generic]:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32):
        raise SeriesError(f"Bits Allocated {bits} is not supported for MR volumes")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _decode(path: Path, ds: Dataset) -> npt.NDArray[np.generic]:
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME2", "MONOCHROME1"):
        raise SeriesError(f"{path}: Photometric Interpretation {photometric or 'missing'} is not greyscale")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        # pixel_array() reading a path parses the file itself and cannot inflate a deflated one.
        arr = pixel_array(dcmread(path) if syntax == DeflatedExplicitVRLittleEndian else path)
    except (ValueError, RuntimeError, NotImplementedError, KeyError, AttributeError) as exc:
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise SeriesError(f"{path}: cannot decode the pixel data ({name}): {exc}") from exc
    return arr if arr.ndim == 3 else arr[np.newaxis]


def read_series(
    paths: Sequence[str | os.PathLike[str]],
    *,
    headers: Sequence[Dataset] | None = None,
    tolerance: GeometryTolerance | None = None,
) -> SeriesVolume:
    """Build the volume of one stored series.

    ``paths`` are the files of one series (any order; single-frame MR, Enhanced
    MR or Legacy Converted Enhanced MR). ``headers`` may pass the headers
    already read (``stop_before_pixels``) for those paths, in the same order.
    Pixel values are rescaled by each frame's Rescale Slope/Intercept; the
    array keeps the stored integer type when every frame's rescale is the
    identity and every file stores the same type, and is float32 otherwise.
    A MONOCHROME1 series (low values shown white) is inverted within its value
    range, so that high values are bright as in every other series the
    analysis reads. Raises :class:`SeriesError` when the
    files cannot form one evenly spaced stack.
    """
    files, datasets, frames = series_frame_headers(paths, headers)
    geometry = stack_geometry(frames, tolerance)
    identity = all(f.rescale_slope == 1.0 and f.rescale_intercept == 0.0 for f in frames)
    stored = {_stored_dtype(ds) for ds in datasets}
    # Files of one series may differ in stored type (a slice re-encoded signed, say):
    # their values are the same quantity, so they meet in a type that holds them all.
    dtype = next(iter(stored)) if identity and len(stored) == 1 else np.dtype(np.float32)
    array = _as_monochrome2(_pixels(files, datasets, frames, geometry, dtype), files, datasets, frames)
    volume = Volume(array, geometry.spacing, geometry.origin, geometry.direction)
    first = datasets[0]
    ordered = [frames[i] for i in geometry.order]
    return SeriesVolume(
        volume=volume,
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        series_instance_uid=str(first.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        slices=tuple(
            SliceSource(f.path, f.sop_instance_uid, None if f.frame_index is None else f.frame_index + 1)
            for f in ordered
        ),
    )


def read_volume(
    paths: Sequence[str | os.PathLike[str]],
    *,
    headers: Sequence[Dataset] | None = None,
    tolerance: GeometryTolerance | None = None,
) -> Volume:
    """The :class:`Volume` of one stored series (see :func:`read_series`)."""
    return read_series(paths, headers=headers, tolerance=tolerance).volume


def _pixels(
    files: list[Path],
    datasets: list[Dataset],
    frames: list[FrameHeader],
    geometry: StackGeometry,
    dtype: np.dtype[np.generic],
) -> npt.NDArray[np.generic]:
    slice_of = {frame_pos: k for k, frame_pos in enumerate(geometry.order)}
    by_file: dict[Path, list[int]] = defaultdict(list)
    for n, frame in enumerate(frames):
        by_file[frame.path].append(n)
    header_of = dict(zip(files, datasets, strict=True))
    out = np.empty(geometry.shape, dtype=dtype)
    for path, members in by_file.items():
        decoded = _decode(path, header_of[path])
        for n in members:
            frame = frames[n]
            index = frame.frame_index or 0
            if index >= decoded.shape[0] or decoded.shape[1:] != (frame.rows, frame.columns):
                raise SeriesError(
                    f"{path}: pixel data shape {decoded.shape} does not match "
                    f"{frame.rows}x{frame.columns} frame {index + 1}"
                )
            plane = decoded[index]
            if dtype.kind == "f":
                plane = plane.astype(np.float64) * frame.rescale_slope + frame.rescale_intercept
            out[slice_of[n]] = plane
    return out


def _as_monochrome2(
    array: npt.NDArray[np.generic], files: list[Path], datasets: list[Dataset], frames: list[FrameHeader]
) -> npt.NDArray[np.generic]:
    if photometric_interpretation(datasets) == "MONOCHROME2":
        return array
    # The range every value of the series can take (stored bits, then each frame's rescale);
    # mirroring within it keeps integers in their type and the same tissue at the same value.
    header_of = dict(zip(files, datasets, strict=True))
    ends = []
    for frame in frames:
        ds = header_of[frame.path]
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        ends += [low * frame.rescale_slope + frame.rescale_intercept,
                 high * frame.rescale_slope + frame.rescale_intercept]
    low, high = min(ends), max(ends)
    if array.dtype.kind in "iu":
        low, high = int(low), int(high)
    mirrored = np.asarray(low + high, dtype=array.dtype) - np.clip(array, low, high)
    return mirrored.astype(array.dtype, copy=False)
