"""DICOM modules every phantom object shares: the synthetic identity and the common attributes.

Used by the single-frame writer (``writer``) and the Enhanced MR writer
(``enhanced``) alike. Identities are synthetic and anonymous; UIDs derive from
a seed so the same seed writes the same study.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from phantom.study import ImageSeries


@dataclass(frozen=True)
class StudyIdentity:
    """Synthetic, anonymous patient and study attributes shared by every object of a study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    frame_of_reference_uid: str
    accession: str
    study_id: str
    when: datetime
    uid_seed: str

    @classmethod
    def synthetic(cls, seed: int, when: datetime | None = None, content: str = "") -> StudyIdentity:
        """The identity of phantom ``seed``; ``content`` enters every UID.

        ``content`` is a digest of everything else that shapes the study
        (implants, sequences, grid, source volume...): two studies drawn with
        the same seed but other content must not share UIDs, or a node keeps
        the first one's instances and ignores the second's.
        """
        rng = np.random.default_rng(seed)
        uid_seed = f"{seed}/{content}" if content else str(seed)
        number = int(rng.integers(10_000, 99_999))
        when = when or datetime(2026, 1, 1, 9, 0, 0) + timedelta(minutes=int(rng.integers(0, 525_600)))
        return cls(
            patient_name=f"PHANTOM^LUMBAR^{number}",
            patient_id=f"LSPH{number}",
            birth_date=f"19{int(rng.integers(40, 85))}0101",
            sex=str(rng.choice(["F", "M"])),
            study_uid=generate_uid(entropy_srcs=["study", uid_seed]),
            frame_of_reference_uid=generate_uid(entropy_srcs=["for", uid_seed]),
            accession=f"PH{number}",
            study_id=str(number),
            when=when,
            uid_seed=uid_seed,
        )

    def uid(self, *parts: object) -> str:
        return generate_uid(entropy_srcs=[self.uid_seed, *(str(p) for p in parts)])


def base_dataset(identity: StudyIdentity, series: ImageSeries, series_number: int, sop_class: str) -> Dataset:
    """Patient, study, series, frame of reference and equipment modules."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom; no real patient"
    ds.StudyInstanceUID = identity.study_uid
    ds.StudyDate = identity.when.strftime("%Y%m%d")
    ds.StudyTime = identity.when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession
    ds.StudyDescription = "MR LUMBAR SPINE"
    ds.Modality = "MR"
    ds.SeriesInstanceUID = identity.uid("series", series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series.description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = (identity.when + timedelta(minutes=4 * series_number)).strftime("%H%M%S")
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Lumbar Sentinel"
    ds.ManufacturerModelName = "Phantom"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "lumbar-sentinel phantom 1"
    ds.InstitutionName = "Synthetic"
    ds.StationName = "PHANTOM"
    ds.MagneticFieldStrength = 1.5
    return ds


def pixel_module(ds: Dataset, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def window(pixels: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(pixels, [1.0, 99.9])
    return float(round((lo + hi) / 2)), float(max(round(hi - lo), 1))
