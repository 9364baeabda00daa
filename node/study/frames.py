"""Per-frame header facts of classic and multi-frame (functional group) MR objects.

Classic MR Image Storage keeps one frame per file with its attributes at the top
level; Enhanced and Legacy Converted Enhanced MR keep them in the Shared and
Per-frame Functional Groups Sequences, the per-frame item winning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.study.errors import SeriesError

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_CONVERTED_ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.4"
MULTI_FRAME_MR = frozenset({ENHANCED_MR_IMAGE, LEGACY_CONVERTED_ENHANCED_MR_IMAGE})
SUPPORTED_SOP_CLASSES = frozenset({MR_IMAGE}) | MULTI_FRAME_MR
# Image Type (Frame Type in multi-frame objects) value 3 of a planning image: a scanner may store
# it in the series it plans, in another plane and contrast, where it would cost the series its
# single plane, contrast and stack.
LOCALIZER_FLAVOURS = frozenset({"LOCALIZER", "SCOUT"})


@dataclass(frozen=True)
class FrameHeader:
    """Geometry and pixel value facts of one frame (one 2-D slice) of a series."""

    path: Path
    frame_index: int | None  # 0-based index in a multi-frame object; None for single-frame
    sop_instance_uid: str
    position: tuple[float, float, float]  # Image Position (Patient), LPS mm
    orientation: tuple[float, float, float, float, float, float]  # Image Orientation (Patient)
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    rows: int
    columns: int
    rescale_slope: float
    rescale_intercept: float
    slice_thickness: float | None


def is_multi_frame(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def frame_count(ds: Dataset) -> int:
    if is_multi_frame(ds):
        return int(ds.get("NumberOfFrames", 1) or 1)
    return 1


def frame_indices(ds: Dataset) -> list[int | None]:
    """The object's frames: 0-based indices of a multi-frame object, ``[None]`` for a single-frame one."""
    return list(range(frame_count(ds))) if is_multi_frame(ds) else [None]


def functional_group(ds: Dataset, frame_index: int, keyword: str) -> Dataset | None:
    """The first item of functional group ``keyword`` for a frame: per-frame, else shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        seq = per_frame[frame_index].get(keyword)
        if seq:
            item: Dataset = seq[0]
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            shared_item: Dataset = seq[0]
            return shared_item
    return None


def frame_value(ds: Dataset, frame_index: int | None, group: str, keyword: str) -> object:
    """An attribute of one frame: from functional group ``group`` or, failing that, the top level."""
    if frame_index is not None:
        item = functional_group(ds, frame_index, group)
        if item is not None and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    value = ds.get(keyword)
    return None if value == "" else value


def _floats(value: object, count: int, what: str, where: str) -> tuple[float, ...]:
    if value is None:
        raise SeriesError(f"{where}: {what} is missing")
    try:
        items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
        numbers = tuple(float(str(v)) for v in items)
    except (TypeError, ValueError) as exc:
        raise SeriesError(f"{where}: {what} is not numeric: {value!r}") from exc
    if len(numbers) != count:
        raise SeriesError(f"{where}: {what} must have {count} values, got {len(numbers)}")
    return numbers


def _optional_float(value: object, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    if not isinstance(value, (int, float, str)):
        return default
    try:
        return float(value)
    except ValueError:
        return default


def photometric_interpretation(datasets: Iterable[Dataset]) -> str:
    """The one Photometric Interpretation of a series' files; :class:`SeriesError` when they mix."""
    kinds = {str(ds.get("PhotometricInterpretation", "")) for ds in datasets}
    if len(kinds) > 1:
        raise SeriesError(f"mixed Photometric Interpretation: {sorted(kinds)}")
    return next(iter(kinds), "")


def read_header(path: str | os.PathLike[str]) -> Dataset:
    """The header of a stored DICOM file without its pixel data."""
    try:
        return dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError) as exc:
        raise SeriesError(f"{os.fspath(path)}: not a readable DICOM file ({exc})") from exc


def _image_flavour(ds: Dataset, frame_index: int | None) -> str:
    """Value 3 of a frame's Frame Type (multi-frame) or of the object's Image Type, upper case."""
    value = frame_value(ds, frame_index, "MRImageFrameTypeSequence", "FrameType")
    if frame_index is None or value is None:
        value = ds.get("ImageType")
    items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    return str(items[2]).strip().upper() if len(items) > 2 and items[2] is not None else ""


def localizer_frames(ds: Dataset) -> frozenset[int | None]:
    """The frames of ``ds`` (``None``: the one frame of a single-frame object) that are localizers."""
    return frozenset(i for i in frame_indices(ds) if _image_flavour(ds, i) in LOCALIZER_FLAVOURS)


def frames_left_out(datasets: Sequence[Dataset]) -> list[frozenset[int | None]]:
    """Per object of one series, the frames the series is read without: its localizers.

    A series of localizers only (a three-plane scout) is kept whole, so that it is
    still classified, and reported, as the localizer it is.
    """
    left_out = [localizer_frames(ds) for ds in datasets]
    if sum(len(s) for s in left_out) == sum(frame_count(ds) for ds in datasets):
        return [frozenset() for _ in datasets]
    return left_out


def without_localizers(datasets: Sequence[Dataset]) -> list[tuple[int, Dataset, frozenset[int | None]]]:
    """(position in ``datasets``, object, its frames left out) of the objects of one series that
    hold more than localizers (:func:`frames_left_out`): what the series' volume is built from."""
    left_out = frames_left_out(datasets)
    return [(n, ds, skip) for n, (ds, skip) in enumerate(zip(datasets, left_out, strict=True))
            if len(skip) < frame_count(ds)]


def frame_headers(path: Path, ds: Dataset, leave_out: Collection[int | None] = ()) -> list[FrameHeader]:
    """One :class:`FrameHeader` per frame of the object ``ds`` stored at ``path``.

    Frames in ``leave_out`` (0-based indices; ``None`` for a single-frame object) are
    skipped before their geometry is read: a localizer's may be incomplete.
    """
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SUPPORTED_SOP_CLASSES:
        name = getattr(ds.get("SOPClassUID"), "name", sop_class) or "missing"
        raise SeriesError(f"{path}: SOP class {name} is not an MR image storage class this node reads")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise SeriesError(f"{path}: colour images ({ds.SamplesPerPixel} samples per pixel) are not MR")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 1 or columns < 1:
        raise SeriesError(f"{path}: Rows/Columns missing or zero")
    uid = str(ds.get("SOPInstanceUID", ""))
    indices = [i for i in frame_indices(ds) if i not in leave_out]
    out: list[FrameHeader] = []
    for index in indices:
        where = f"{path}" if index is None else f"{path} frame {index + 1}"
        position = _floats(
            frame_value(ds, index, "PlanePositionSequence", "ImagePositionPatient"),
            3, "Image Position (Patient)", where,
        )
        orientation = _floats(
            frame_value(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient"),
            6, "Image Orientation (Patient)", where,
        )
        spacing = _floats(
            frame_value(ds, index, "PixelMeasuresSequence", "PixelSpacing"), 2, "Pixel Spacing", where
        )
        if min(spacing) <= 0:
            raise SeriesError(f"{where}: Pixel Spacing must be positive, got {spacing}")
        slope = _optional_float(
            frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"), 1.0
        )
        intercept = _optional_float(
            frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0
        )
        if slope is not None and (slope == 0 or not math.isfinite(slope)):
            # a zero slope maps every pixel to one value: the analysis would see a blank series
            raise SeriesError(f"{where}: Rescale Slope must be a finite non-zero number, got {slope}")
        if intercept is not None and not math.isfinite(intercept):
            raise SeriesError(f"{where}: Rescale Intercept must be a finite number, got {intercept}")
        thickness = _optional_float(frame_value(ds, index, "PixelMeasuresSequence", "SliceThickness"), None)
        out.append(
            FrameHeader(
                path=path,
                frame_index=index,
                sop_instance_uid=uid,
                position=(position[0], position[1], position[2]),
                orientation=(
                    orientation[0], orientation[1], orientation[2],
                    orientation[3], orientation[4], orientation[5],
                ),
                pixel_spacing=(spacing[0], spacing[1]),
                rows=rows,
                columns=columns,
                rescale_slope=1.0 if slope is None else slope,
                rescale_intercept=0.0 if intercept is None else intercept,
                slice_thickness=thickness,
            )
        )
    return out


def series_frame_headers(
    paths: Sequence[str | os.PathLike[str]], headers: Sequence[Dataset] | None = None
) -> tuple[list[Path], list[Dataset], list[FrameHeader]]:
    """Headers (read now unless given) and frames of the files of one series.

    Localizer frames are left out (:func:`frames_left_out`), and with them a file that
    holds nothing else: what is returned is what the series' volume is built from.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a sequence of file paths, not a single path")
    files = [Path(p) for p in paths]
    if not files:
        raise SeriesError("paths: the series has no files")
    if headers is None:
        datasets = [read_header(p) for p in files]
    else:
        if len(headers) != len(files):
            raise ValueError(f"headers: {len(headers)} headers for {len(files)} paths")
        datasets = list(headers)
    for path, ds in zip(files, datasets, strict=True):
        if not ds.get("SeriesInstanceUID"):
            raise SeriesError(f"{path}: no Series Instance UID (truncated file or not an image instance)")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise SeriesError(f"files belong to {len(series)} different series (SeriesInstanceUID)")
    kept = without_localizers(datasets)
    # after the localizers are left out: only the frames read need to share one frame of reference
    check_frame_of_reference([ds for _, ds, _ in kept])
    frames = [frame for n, ds, skip in kept for frame in frame_headers(files[n], ds, skip)]
    return [files[n] for n, _, _ in kept], [ds for _, ds, _ in kept], frames


def frame_of_reference(ds: Dataset) -> str:
    """The Frame of Reference UID of an object; "" when it has none."""
    return str(ds.get("FrameOfReferenceUID", "") or "").strip()


def check_frame_of_reference(datasets: Iterable[Dataset]) -> str:
    """The one Frame of Reference UID of a series' objects ("" when none states one).

    Positions in different frames of reference cannot be compared (PS3.3 C.7.4.1), so
    objects that mix them, or mix a UID with none, cannot form one stack.
    """
    values = {frame_of_reference(ds) for ds in datasets}
    if len(values) > 1:
        raise SeriesError(
            f"files belong to {len(values)} different frames of reference (FrameOfReferenceUID)"
        )
    return next(iter(values), "")
