"""The Segmentation: one segment per vertebral body, one per suspicious lesion (results contract).

Drawn on the series the bodies were segmented on, frame for frame, and
referencing it. Each body's segment carries the level as its label, its
tracking identifier and its anatomic type, so the SR's measurement groups
can point at it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from analysis.results import SignState, SpineSegmentation
from analysis.signs.types import LevelSigns
from analysis.volume import LEVEL_LABELS
from node.results.codes import BODY_CATEGORY, LESION_CATEGORY, LESION_TYPE, level_site
from node.results.identity import (
    DEVICE_SERIAL_NUMBER,
    MANUFACTURER,
    PRODUCT,
    SEG_SERIES_NUMBER,
    ResultIdentity,
    character_set,
)
from node.results.source import SegmentedSeries

SERIES_DESCRIPTION = "Lumbar Sentinel vertebral bodies and lesions"


@dataclass(frozen=True)
class SegmentPlan:
    """One segment before it is written: its number, label and what it shows."""

    number: int
    label: str  # "L3" or "Lesion L3"
    level: str
    is_lesion: bool


def lesion_label(level: str) -> str:
    return f"Lesion {level}"


def tracking_uid(identity: ResultIdentity, label: str) -> str:
    """The tracking UID of a finding, shared by its SEG segment and its SR measurement group."""
    return str(identity.uid("tracking", label))


def _algorithm(identity: ResultIdentity) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=PRODUCT, family=codes.cid7162.ArtificialIntelligence, version=identity.algorithm_version
    )


def plan_segments(segmentation: SpineSegmentation, level_signs: Seq[LevelSigns]) -> list[SegmentPlan]:
    """Bodies top to bottom with voxels in the label map, then the suspicious levels' lesions."""
    present = set(np.unique(np.asarray(segmentation.labels.array)).tolist())
    bodies = sorted(
        (b for b in segmentation.bodies if b.label in present and b.level in LEVEL_LABELS),
        key=lambda b: LEVEL_LABELS[b.level],
    )
    plans = [SegmentPlan(n, b.level, b.level, False) for n, b in enumerate(bodies, start=1)]
    for ls in level_signs:
        if (
            ls.suspicious_for_malignancy == SignState.PRESENT
            and ls.lesion_mask is not None
            and np.asarray(ls.lesion_mask.array).any()
        ):
            plans.append(SegmentPlan(len(plans) + 1, lesion_label(ls.level), ls.level, True))
    return plans


def _masks(
    plans: Seq[SegmentPlan], segmentation: SpineSegmentation, level_signs: Seq[LevelSigns]
) -> npt.NDArray[np.bool_]:
    """``[k, row, column, segment]`` on the label grid."""
    labels = segmentation.labels
    out = np.zeros((*labels.array.shape, len(plans)), dtype=bool)
    signs = {ls.level: ls for ls in level_signs}
    for n, plan in enumerate(plans):
        if plan.is_lesion:
            lesion = signs[plan.level].lesion_mask
            if lesion is None or not lesion.same_grid(labels):
                raise ValueError(f"level_signs: the {plan.level} lesion mask is not on the label grid")
            out[..., n] = np.asarray(lesion.array).astype(bool)
        else:
            out[..., n] = np.asarray(labels.array) == LEVEL_LABELS[plan.level]
    return out


def _description(plan: SegmentPlan, identity: ResultIdentity) -> hd.seg.SegmentDescription:
    site = level_site(plan.level)
    return hd.seg.SegmentDescription(
        segment_number=plan.number,
        segment_label=plan.label,
        segmented_property_category=LESION_CATEGORY if plan.is_lesion else BODY_CATEGORY,
        segmented_property_type=LESION_TYPE if plan.is_lesion else site,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(identity),
        tracking_uid=tracking_uid(identity, plan.label),
        tracking_id=plan.label,
        anatomic_regions=[site] if plan.is_lesion else None,
    )


def _source_images(source: SegmentedSeries) -> list[Dataset]:
    """The source images as highdicom reads them, each with a Slice Thickness.

    highdicom copies the SEG's pixel measures from the source images. A
    single-frame image without a Slice Thickness value (Type 2: it may be
    empty, and some senders leave it out) has none to copy: its copy here
    takes the slices' spacing, the thickness the SEG's frames stand for.
    """
    thickness = f"{source.volume.spacing[2]:.6g}"
    out = []
    for ds in source.datasets:
        if ds.get("SliceThickness") in (None, "") and "SharedFunctionalGroupsSequence" not in ds:
            ds = copy.deepcopy(ds)
            ds.SliceThickness = thickness
        out.append(ds)
    return out


def build_segmentation(
    source: SegmentedSeries,
    segmentation: SpineSegmentation,
    level_signs: Seq[LevelSigns],
    identity: ResultIdentity,
) -> tuple[hd.seg.Segmentation, list[SegmentPlan]]:
    """The SEG and the segments it holds (in segment-number order).

    Raises ValueError when there is no body to segment: a SEG needs one segment.
    """
    if not isinstance(source, SegmentedSeries):
        raise TypeError(f"source must be a SegmentedSeries, got {type(source).__name__}")
    if not isinstance(segmentation, SpineSegmentation):
        raise TypeError(f"segmentation must be a SpineSegmentation, got {type(segmentation).__name__}")
    if not isinstance(identity, ResultIdentity):
        raise TypeError(f"identity must be a ResultIdentity, got {type(identity).__name__}")
    plans = plan_segments(segmentation, level_signs)
    if not any(not p.is_lesion for p in plans):
        raise ValueError("segmentation: no vertebral body to write as a segment")
    masks = _masks(plans, segmentation, level_signs)
    frames = np.stack([source.to_frames(masks[..., n]) for n in range(len(plans))], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=_source_images(source),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(p, identity) for p in plans],
        series_instance_uid=identity.uid("seg", "series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=identity.uid("seg", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=PRODUCT,
        software_versions=identity.algorithm_version,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_description="Vertebral bodies and suspicious lesions",
        content_label="VERTEBRAE",
        series_description=SERIES_DESCRIPTION,
        specific_character_set=character_set(source.datasets[0]),
        content_date=identity.created.date(),
        content_time=identity.created.time(),
        series_date=identity.created.date(),
        series_time=identity.created.time(),
    )
    # highdicom draws a random Dimension Organization UID; ours derives from the analysis
    organization = identity.uid("seg", "dimension organization")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = organization
    return seg, plans
