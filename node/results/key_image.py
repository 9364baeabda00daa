"""The key image: an RGB Secondary Capture of the mid-sagittal slice, for a radiologist's first look.

Body outlines with their level names, the flagged levels in colour (red:
suspicious for malignancy, with the lesion filled; yellow: compression
fracture without malignant features), and the burned-in line "Triage aid -
not a diagnosis". Drawn at about 1024 pixels on the long side so that a
viewer's thumbnail and full-screen view both read it; anterior is on the
left and superior at the top, as sagittal images are read.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import highdicom as hd
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM
from scipy import ndimage

from analysis.findings import StudyFindings
from analysis.results import SignState, SpineSegmentation
from analysis.signs.types import LevelSigns
from analysis.volume import LEVEL_LABELS, Volume
from node.results.identity import (
    KEY_IMAGE_SERIES_NUMBER,
    MANUFACTURER,
    PRODUCT,
    ResultIdentity,
    character_set,
)
from node.results.source import SegmentedSeries

TRIAGE_LINE = "Triage aid - not a diagnosis"
SERIES_DESCRIPTION = "Lumbar Sentinel key image (triage aid)"
LONG_SIDE_PX = 1024
OUTLINE_PX = 3

RGB = tuple[int, int, int]
SUSPICIOUS: RGB = (255, 48, 48)
FRACTURE: RGB = (255, 215, 0)
NO_FLAG: RGB = (64, 220, 96)
TEXT: RGB = (255, 255, 255)


def mid_sagittal_index(labels: Volume) -> int:
    """The slice through the most vertebral-body voxels (the spine's midline); the middle one if none."""
    counts = (np.asarray(labels.array) > 0).sum(axis=(1, 2))
    return int(np.argmax(counts)) if counts.any() else len(counts) // 2


def _display_axes(volume: Volume) -> tuple[bool, bool, bool]:
    """(transpose, flip rows, flip columns) so that a slice shows anterior left, superior up."""
    d = volume.direction_matrix
    i_axis, j_axis = d[:, 0], d[:, 1]
    transpose = abs(i_axis[2]) > abs(j_axis[2])  # columns run head-feet: swap
    across, down = (j_axis, i_axis) if transpose else (i_axis, j_axis)
    return transpose, bool(down[2] > 0), bool(across[1] < 0)


def _oriented(plane: npt.NDArray[np.generic], axes: tuple[bool, bool, bool]) -> npt.NDArray[np.generic]:
    transpose, flip_rows, flip_cols = axes
    out = plane.T if transpose else plane
    if flip_rows:
        out = out[::-1, :]
    if flip_cols:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _grey(plane: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    values = plane.astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.8])
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    return (scaled * 255.0).round().astype(np.uint8)


def _nearest(plane: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    return np.asarray(Image.fromarray(plane).resize(size, Image.Resampling.NEAREST), dtype=np.uint8)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _colour(ls: LevelSigns | None) -> RGB:
    if ls is None:
        return NO_FLAG
    if ls.suspicious_for_malignancy == SignState.PRESENT:
        return SUSPICIOUS
    if ls.compression_fracture == SignState.PRESENT:
        return FRACTURE
    return NO_FLAG


def render_key_image(
    volume: Volume, segmentation: SpineSegmentation, level_signs: Seq[LevelSigns], device_name: str
) -> npt.NDArray[np.uint8]:
    """The annotated mid-sagittal slice as ``(rows, columns, 3)`` RGB."""
    labels = segmentation.labels
    if not volume.same_grid(labels):
        raise ValueError("volume: not on the grid of segmentation.labels")
    k = mid_sagittal_index(labels)
    axes = _display_axes(volume)
    grey = _oriented(np.asarray(volume.array)[k], axes)
    label_plane = _oriented(np.asarray(labels.array)[k], axes)
    signs = {ls.level: ls for ls in level_signs}
    lesion_plane = np.zeros(label_plane.shape, dtype=bool)
    for ls in level_signs:
        if ls.suspicious_for_malignancy == SignState.PRESENT and ls.lesion_mask is not None:
            lesion_plane |= _oriented(np.asarray(ls.lesion_mask.array)[k] > 0, axes)

    # physical aspect: columns then rows spacing after orientation
    col_mm, row_mm = (volume.spacing[1], volume.spacing[0]) if axes[0] else volume.spacing[:2]
    width_mm, height_mm = grey.shape[1] * col_mm, grey.shape[0] * row_mm
    scale = LONG_SIDE_PX / max(width_mm, height_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    image = Image.fromarray(_grey(grey)).resize(size, Image.Resampling.BICUBIC).convert("RGB")
    label_img = _nearest(label_plane.astype(np.uint8), size)
    lesion_img = _nearest(lesion_plane.astype(np.uint8), size) > 0

    pixels = np.asarray(image).copy()
    pixels[lesion_img] = (0.55 * pixels[lesion_img] + 0.45 * np.array(SUSPICIOUS)).astype(np.uint8)
    places: list[tuple[str, RGB, tuple[float, float]]] = []
    for level, value in sorted(LEVEL_LABELS.items(), key=lambda kv: kv[1]):
        mask = label_img == value
        if not mask.any():
            continue
        colour = _colour(signs.get(level))
        edge = mask & ~ndimage.binary_erosion(mask, iterations=OUTLINE_PX)
        pixels[edge] = colour
        rows, cols = np.nonzero(mask)
        places.append((level, colour, (float(cols.min()), float(rows.mean()))))

    font_px = max(14, LONG_SIDE_PX // 36)
    band = int(font_px * 1.8)
    canvas = Image.new("RGB", (size[0], size[1] + 2 * band), (0, 0, 0))
    canvas.paste(Image.fromarray(pixels), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_px)
    for level, colour, (left, middle) in places:
        x = max(2.0, left - font_px * 2.2)
        draw.text((x, band + middle), level, fill=colour, font=font, anchor="lm",
                  stroke_width=2, stroke_fill=(0, 0, 0))
    draw.text((size[0] / 2, band / 2), TRIAGE_LINE, fill=TEXT, font=font, anchor="mm")
    legend = _font(max(12, font_px * 3 // 4))
    y = size[1] + band + band / 2
    x = 8.0
    for text, colour in (("suspicious", SUSPICIOUS), ("fracture", FRACTURE), ("no flag", NO_FLAG)):
        draw.text((x, y), text, fill=colour, font=legend, anchor="lm")
        x += draw.textlength(text, font=legend) + 24
    draw.text((size[0] - 8, y), device_name, fill=TEXT, font=legend, anchor="rm")
    return np.asarray(canvas, dtype=np.uint8)


def build_key_image(
    source: SegmentedSeries,
    segmentation: SpineSegmentation,
    level_signs: Seq[LevelSigns],
    findings: StudyFindings,
    identity: ResultIdentity,
) -> hd.sc.SCImage:
    """The Secondary Capture of the series the bodies were drawn on, referencing the slice shown."""
    if not isinstance(source, SegmentedSeries):
        raise TypeError(f"source must be a SegmentedSeries, got {type(source).__name__}")
    if not isinstance(identity, ResultIdentity):
        raise TypeError(f"identity must be a ResultIdentity, got {type(identity).__name__}")
    if not isinstance(findings, StudyFindings):
        raise TypeError(f"findings must be StudyFindings, got {type(findings).__name__}")
    pixels = render_key_image(source.volume, segmentation, level_signs, identity.device_name)
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        study_instance_uid=findings.study_instance_uid,
        series_instance_uid=identity.uid("key_image", "series"),
        series_number=KEY_IMAGE_SERIES_NUMBER,
        sop_instance_uid=identity.uid("key_image", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("P", "F"),
        series_description=SERIES_DESCRIPTION,
        manufacturer_model_name=PRODUCT,
        software_versions=identity.algorithm_version,
        content_date=identity.created.date(),
        content_time=identity.created.time(),
        series_date=identity.created.date(),
        series_time=identity.created.time(),
        specific_character_set=character_set(source.reference),
    )
    sc.copy_patient_and_study_information(source.reference)
    sc.DateOfSecondaryCapture = DA(identity.created.strftime("%Y%m%d"))
    sc.TimeOfSecondaryCapture = TM(identity.created.strftime("%H%M%S"))
    # rendered and annotated by software, not taken over from another device (highdicom's "DI")
    sc.ConversionType = hd.sc.ConversionTypeValues.WSD.value
    sc.BurnedInAnnotation = "YES"
    # an unpaired body part: Laterality (Type 2C) stays absent
    sc.BodyPartExamined = "LSPINE"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = "Mid-sagittal slice with vertebral body outlines and flagged levels"
    frame = source.frame_of_slice[mid_sagittal_index(segmentation.labels)]
    shown = source.datasets[0] if len(source.datasets) == 1 else source.datasets[frame]
    item = Dataset()
    item.ReferencedSOPClassUID = shown.SOPClassUID
    item.ReferencedSOPInstanceUID = shown.SOPInstanceUID
    if len(source.datasets) == 1 and int(shown.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = frame + 1
    sc.SourceImageSequence = [item]
    return sc
