"""Real DICOM result objects for delivery tests: an SR and a secondary capture made with highdicom."""

from __future__ import annotations

import hashlib
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import MRImageStorage, generate_uid

from node.results import ResultKind, ResultObject


def source_image(study_uid: str) -> Dataset:
    """The header of a received MR image the objects are about (no pixel data needed)."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PHANTOM-1"
    ds.PatientName = "Phantom^One"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyID = "1"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "MR"
    return ds


def _described(kind: ResultKind, ds: Dataset, path: Path) -> ResultObject:
    ds.save_as(path, enforce_file_format=True)
    return ResultObject(kind, path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID),
                        hashlib.sha256(path.read_bytes()).hexdigest())


def write_objects(folder: Path, study_uid: str) -> list[ResultObject]:
    """An SR (TID 1500 with an empty measurement list) and an RGB secondary capture."""
    folder.mkdir(parents=True, exist_ok=True)
    source = source_image(study_uid)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="Lumbar Sentinel", model_name="test")))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="L3"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            hd.sr.CodedConcept("SUSPMAL", "99LSENT", "Suspicious for malignancy"),
            hd.sr.CodedConcept("272519000", "SCT", "Absent"))])
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=hd.sr.CodedConcept("LSPINE", "99LSENT", "Lumbar spine MRI triage"),
        imaging_measurements=[group], title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report, series_instance_uid=generate_uid(), series_number=900,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Lumbar Sentinel")
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[4:12, 4:12, 0] = 255
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB, bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), series_number=902, instance_number=1,
        manufacturer="Lumbar Sentinel", patient_orientation=("A", "F"))
    return [_described(ResultKind.SR, sr, folder / "sr.dcm"),
            _described(ResultKind.KEY_IMAGE, sc, folder / "key_image.dcm")]
