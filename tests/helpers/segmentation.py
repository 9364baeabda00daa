"""A real Segmentation Storage object (made with highdicom) for delivery tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from node.results import ResultKind, ResultObject
from tests.helpers.dicom import mr_instance


def write_segmentation(folder: Path, study_uid: str) -> ResultObject:
    """A one-segment binary SEG of a 16 x 16 MR slice of ``study_uid``, written to ``folder/seg.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = mr_instance(study_uid, generate_uid(), 1)
    mask = np.zeros((1, source.Rows, source.Columns), dtype=bool)
    mask[0, 4:12, 4:12] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="L3",
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Bone,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="Lumbar Sentinel", version="test", family=codes.DCM.ArtificialIntelligence))
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Lumbar Sentinel",
        manufacturer_model_name="test", software_versions="test", device_serial_number="1")
    path = folder / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    return ResultObject(ResultKind.SEG, path, str(seg.SOPClassUID), str(seg.SOPInstanceUID),
                        str(seg.SeriesInstanceUID), hashlib.sha256(path.read_bytes()).hexdigest())
