"""Build small MR series with pydicom for the study tests (single-frame and Enhanced MR)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class Acquisition:
    """MR parameters of a test series (times in ms)."""

    tr: float | None = 550.0
    te: float | None = 12.0
    ti: float | None = None
    flip: float | None = 90.0
    scanning: tuple[str, ...] = ("SE",)
    variant: tuple[str, ...] = ("SK", "SP")
    agent: str | None = None
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NONE")
    description: str = "SAG T1 TSE"


T1 = Acquisition()
T2 = Acquisition(tr=3500.0, te=100.0, description="SAG T2 TSE")
STIR = Acquisition(tr=4000.0, te=40.0, ti=160.0, scanning=("SE", "IR"), variant=("SK", "SP", "MP"),
                   description="SAG STIR")
T1C = replace(T1, agent="GADOBUTROL", description="SAG T1 POST")


@dataclass(frozen=True)
class Grid:
    """Where the slices of a test series lie (LPS mm)."""

    orientation: tuple[float, ...] = SAGITTAL
    origin: tuple[float, float, float] = (-30.0, -100.0, 120.0)
    pixel_spacing: tuple[float, float] = (0.8, 0.6)  # between rows, between columns
    slice_spacing: float = 4.0
    slice_thickness: float = 4.0
    offsets: tuple[float, ...] | None = None  # explicit positions along the normal, mm

    def normal(self) -> npt.NDArray[np.float64]:
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])

    def positions(self, count: int) -> list[tuple[float, float, float]]:
        offsets = self.offsets if self.offsets is not None else [k * self.slice_spacing for k in range(count)]
        base, n = np.asarray(self.origin), self.normal()
        return [tuple(float(v) for v in base + d * n) for d in offsets]  # type: ignore[misc]


@dataclass
class Study:
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)


def volume_array(slices: int = 6, rows: int = 10, columns: int = 8, seed: int = 0) -> npt.NDArray[np.uint16]:
    """Distinct 12-bit values so any slice mix-up shows."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 4000, size=(slices, rows, columns), dtype=np.uint16)
    arr[:, 0, 0] = np.arange(slices, dtype=np.uint16) * 7
    return arr


def _common(ds: Dataset, study: Study, series_uid: str, number: int, acq: Acquisition) -> None:
    ds.PatientName = "Phantom^Study"
    ds.PatientID = "LSENT-TEST"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = "20260101"
    ds.StudyTime = "080000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = acq.description
    ds.SeriesDate = "20260101"
    ds.SeriesTime = f"08{number:02d}00"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Lumbar Sentinel tests"
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "LSPINE"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _meta(sop_class: str, uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def single_frame_series(
    array: npt.NDArray[np.integer],
    grid: Grid = Grid(),
    acq: Acquisition = T1,
    *,
    study: Study | None = None,
    number: int = 1,
    slopes: Sequence[tuple[float, float]] | None = None,
) -> list[Dataset]:
    """One classic MR Image Storage dataset per slice of ``array`` ([k, j, i])."""
    study = study or Study()
    series_uid = generate_uid()
    positions = grid.positions(array.shape[0])
    out = []
    for k, plane in enumerate(array):
        uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _meta(MR_IMAGE, uid)
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE, uid
        _common(ds, study, series_uid, number, acq)
        ds.ImageType = list(acq.image_type)
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = "20260101", f"08{number:02d}00.{k:06d}"
        ds.AcquisitionDate, ds.AcquisitionTime = "20260101", f"08{number:02d}00"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in grid.orientation]
        ds.PixelSpacing = list(grid.pixel_spacing)
        ds.SliceThickness = grid.slice_thickness
        ds.ScanningSequence = list(acq.scanning)
        ds.SequenceVariant = list(acq.variant)
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        if acq.tr is not None:
            ds.RepetitionTime = acq.tr
        if acq.te is not None:
            ds.EchoTime = acq.te
        if acq.ti is not None:
            ds.InversionTime = acq.ti
        if acq.flip is not None:
            ds.FlipAngle = acq.flip
        ds.EchoTrainLength = 4
        if acq.agent is not None:
            ds.ContrastBolusAgent = acq.agent
        ds.Rows, ds.Columns = plane.shape
        ds.WindowCenter, ds.WindowWidth = 2000, 4000
        if slopes is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slopes[k]
            ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(plane.astype(np.uint16)).tobytes()
        out.append(ds)
    return out


def write(datasets: Sequence[Dataset], folder: Path, shuffle: int | None = None) -> list[Path]:
    """Save each dataset as a DICOM file; return the paths, shuffled when ``shuffle`` is a seed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        path = folder / f"im{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    if shuffle is not None:
        random.Random(shuffle).shuffle(paths)
    return paths


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def enhanced_mr(
    array: npt.NDArray[np.integer],
    grid: Grid = Grid(),
    acq: Acquisition = T1,
    *,
    study: Study | None = None,
    number: int = 1,
    frame_order: Sequence[int] | None = None,
    rescale: tuple[float, float] | None = None,
) -> Dataset:
    """An Enhanced MR Image Storage object holding the slices of ``array`` as frames.

    Geometry and contrast sit in the shared functional groups, positions per
    frame; ``frame_order`` stores the slices in another order.
    """
    study = study or Study()
    uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _meta(ENHANCED_MR_IMAGE, uid)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR_IMAGE, uid
    _common(ds, study, generate_uid(), number, acq)
    original = acq.image_type[0]
    ds.ImageType = [original, "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20260101", "080000"
    ds.AcquisitionDateTime = f"20260101080{number % 10}00"
    ds.ContentQualification = "PRODUCT"
    ds.PixelPresentation, ds.VolumetricProperties = "MONOCHROME", "VOLUME"
    ds.VolumeBasedCalculationTechnique, ds.ComplexImageComponent = "NONE", "MAGNITUDE"
    ds.AcquisitionContrast = "UNKNOWN"
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PulseSequenceName = acq.description[:16]
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = "GRADIENT" if "GR" in acq.scanning else "SPIN"
    ds.MultipleSpinEcho, ds.MultiPlanarExcitation, ds.PhaseContrast = "NO", "YES", "NO"
    ds.TimeOfFlightContrast, ds.SteadyStatePulseSequence = "NO", "NONE"
    ds.EchoPlanarPulseSequence, ds.SaturationRecovery = "NO", "NO"
    ds.SpectrallySelectedSuppression, ds.OversamplingPhase = "NONE", "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.SegmentedKSpaceTraversal, ds.RectilinearPhaseEncodeReordering = "PARTIAL", "LINEAR"
    ds.ResonantNucleus, ds.KSpaceFiltering, ds.MagneticFieldStrength = "1H", "NONE", 1.5
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = "test object"
    ds.AcquisitionDuration, ds.NumberOfKSpaceTrajectories = 120.0, 1
    ds.AcquisitionContextSequence = DicomSequence([])
    ds.ManufacturerModelName, ds.DeviceSerialNumber, ds.SoftwareVersions = "pydicom", "0", "1"
    ds.Rows, ds.Columns = array.shape[1:]
    order = list(frame_order) if frame_order is not None else list(range(array.shape[0]))
    ds.NumberOfFrames = len(order)
    positions = grid.positions(array.shape[0])
    modifier = _item(InversionRecovery="YES" if acq.ti is not None else "NO", FlowCompensation="NONE",
                     T2Preparation="NO", SpectrallySelectedExcitation="NONE", SpatialPresaturation="NONE",
                     PartialFourier="NO", ParallelAcquisition="NO")
    if acq.ti is not None:
        modifier.InversionTimes = [acq.ti]
    timing = _item(RepetitionTime=acq.tr, FlipAngle=acq.flip, EchoTrainLength=4, RFEchoTrainLength=4,
                   GradientEchoTrainLength=0, GradientOutputType="DB_DT", GradientOutput=10.0,
                   SpecificAbsorptionRateSequence=DicomSequence([_item(
                       SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.5)]),
                   OperatingModeSequence=DicomSequence([_item(
                       OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL")]))
    shared = _item(
        PixelMeasuresSequence=DicomSequence([_item(PixelSpacing=list(grid.pixel_spacing),
                                                   SliceThickness=grid.slice_thickness)]),
        PlaneOrientationSequence=DicomSequence([_item(ImageOrientationPatient=list(grid.orientation))]),
        MRTimingAndRelatedParametersSequence=DicomSequence([timing]),
        MREchoSequence=DicomSequence([_item(EffectiveEchoTime=acq.te)]),
        MRModifierSequence=DicomSequence([modifier]),
        MRImageFrameTypeSequence=DicomSequence([_item(
            FrameType=[original, "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
            ComplexImageComponent="MAGNITUDE", AcquisitionContrast="UNKNOWN")]),
    )
    slope, intercept = rescale or (1.0, 0.0)
    shared.PixelValueTransformationSequence = DicomSequence(
        [_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")]
    )
    region = _item(CodeValue="122496007", CodingSchemeDesignator="SCT", CodeMeaning="Lumbar spine")
    shared.FrameAnatomySequence = DicomSequence(
        [_item(FrameLaterality="U", AnatomicRegionSequence=DicomSequence([region]))]
    )
    shared.MRFOVGeometrySequence = DicomSequence([_item(
        InPlanePhaseEncodingDirection="COLUMN", MRAcquisitionFrequencyEncodingSteps=array.shape[2],
        MRAcquisitionPhaseEncodingStepsInPlane=array.shape[1], PercentSampling=100.0,
        PercentPhaseFieldOfView=100.0)])
    shared.MRImagingModifierSequence = DicomSequence([_item(
        PixelBandwidth=200.0, MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=63.9)])
    shared.MRReceiveCoilSequence = DicomSequence([_item(
        ReceiveCoilName="SPINE", ReceiveCoilType="VOLUME", QuadratureReceiveCoil="NO",
        ReceiveCoilManufacturerName="")])
    shared.MRTransmitCoilSequence = DicomSequence([_item(
        TransmitCoilName="BODY", TransmitCoilType="BODY", TransmitCoilManufacturerName="")])
    shared.MRAveragesSequence = DicomSequence([_item(NumberOfAverages=1)])
    if acq.agent is not None:
        ds.ContrastBolusAgentSequence = DicomSequence([_item(
            CodeValue="C-B0322", CodingSchemeDesignator="SRT", CodeMeaning=acq.agent,
            ContrastBolusAgentNumber=1, ContrastBolusIngredientCodeSequence=DicomSequence([]),
            ContrastBolusIngredientConcentration=None, ContrastBolusVolume=None,
            ContrastBolusAdministrationRouteSequence=DicomSequence([_item(
                CodeValue="G-D101", CodingSchemeDesignator="SRT", CodeMeaning="Intravenous route")]))])
        shared.ContrastBolusUsageSequence = DicomSequence([_item(
            ContrastBolusAgentNumber=1, ContrastBolusAgentAdministered="YES",
            ContrastBolusAgentDetected=None)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    dim_uid = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=dim_uid)])
    ds.DimensionIndexSequence = DicomSequence([_item(
        DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111,
        DimensionOrganizationUID=dim_uid)])
    per_frame = []
    for k in order:
        per_frame.append(_item(
            FrameContentSequence=DicomSequence([_item(
                StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[k + 1],
                FrameAcquisitionDateTime="20260101080000", FrameReferenceDateTime="20260101080000",
                FrameAcquisitionDuration=100.0)]),
            PlanePositionSequence=DicomSequence([_item(ImagePositionPatient=list(positions[k]))]),
        ))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.ascontiguousarray(array[order].astype(np.uint16)).tobytes()
    return ds
