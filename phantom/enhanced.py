"""Enhanced MR Image Storage (multi-frame) objects for a phantom series.

One object per series; every frame carries its position in the Plane
Position functional group, the shared groups carry pixel measures,
orientation, MR timing, echo, modifiers, coils, averages and frame type.
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import EnhancedMRImageStorage

from phantom.acquisition import Acquisition
from phantom.dataset import StudyIdentity, base_dataset, pixel_module, window
from phantom.study import ImageSeries

_ACQUISITION_CONTRAST = {"T1": "T1", "T2": "T2", "STIR": "STIR"}


def _item(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _sct(code: Code) -> Dataset:
    return _code(code.value, code.scheme_designator, code.meaning)


def _frame_type(acq: Acquisition, contrast: bool) -> dict[str, object]:
    return {
        "PixelPresentation": "MONOCHROME",
        "VolumetricProperties": "VOLUME",
        "VolumeBasedCalculationTechnique": "NONE",
        "ComplexImageComponent": "MAGNITUDE",
        "AcquisitionContrast": _ACQUISITION_CONTRAST.get(acq.contrast, "UNKNOWN"),
        "_flavour": "POST_CONTRAST" if contrast else "STATIC",
    }


def _shared_groups(series: ImageSeries, acq: Acquisition) -> Dataset:
    rows, cols = series.pixels.shape[1:]
    inversion = acq.inversion_ms is not None
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence(
        [
            _item(
                PixelSpacing=[round(v, 6) for v in series.pixel_spacing],
                SliceThickness=series.slice_thickness,
                SpacingBetweenSlices=series.slice_spacing,
            )
        ]
    )
    shared.PlaneOrientationSequence = DicomSequence(
        [_item(ImageOrientationPatient=[round(v, 6) for v in series.orientation])]
    )
    center, width = window(series.pixels)
    shared.FrameVOILUTSequence = DicomSequence([_item(WindowCenter=center, WindowWidth=width)])
    shared.PixelValueTransformationSequence = DicomSequence(
        [_item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")]
    )
    shared.FrameAnatomySequence = DicomSequence(
        [
            _item(
                AnatomicRegionSequence=DicomSequence([_code("122496007", "SCT", "Lumbar spine")]),
                FrameLaterality="U",
            )
        ]
    )
    ft = _frame_type(acq, acq.agent is not None)
    flavour = ft.pop("_flavour")
    shared.MRImageFrameTypeSequence = DicomSequence(
        [_item(FrameType=["ORIGINAL", "PRIMARY", flavour, "NONE"], **ft)]
    )
    shared.MRTimingAndRelatedParametersSequence = DicomSequence(
        [
            _item(
                RepetitionTime=acq.repetition_ms,
                FlipAngle=acq.flip_deg,
                EchoTrainLength=acq.echo_train,
                RFEchoTrainLength=0 if "GR" in acq.scanning_sequence else acq.echo_train,
                GradientEchoTrainLength=acq.echo_train if "GR" in acq.scanning_sequence else 0,
                SpecificAbsorptionRateSequence=DicomSequence(
                    [
                        _item(
                            SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.8
                        )
                    ]
                ),
                GradientOutputType="DB_DT",
                GradientOutput=12.0,
                OperatingModeSequence=DicomSequence(
                    [
                        _item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                        for kind in ("STATIC FIELD", "RF", "GRADIENT")
                    ]
                ),
            )
        ]
    )
    shared.MRFOVGeometrySequence = DicomSequence(
        [
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=rows,
                MRAcquisitionPhaseEncodingStepsInPlane=cols,
                PercentSampling=100.0,
                PercentPhaseFieldOfView=100.0,
            )
        ]
    )
    shared.MREchoSequence = DicomSequence([_item(EffectiveEchoTime=acq.echo_ms)])
    modifier = _item(
        InversionRecovery="YES" if inversion else "NO",
        FlowCompensation="NONE",
        T2Preparation="NO",
        SpatialPresaturation="NONE",
        SpectrallySelectedExcitation="NONE",
        PartialFourier="NO",
        ParallelAcquisition="NO",
    )
    if inversion:
        modifier.InversionTimes = [acq.inversion_ms]
    shared.MRModifierSequence = DicomSequence([modifier])
    shared.MRImagingModifierSequence = DicomSequence(
        [
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=63.87,
                PixelBandwidth=190.0,
            )
        ]
    )
    shared.MRReceiveCoilSequence = DicomSequence(
        [
            _item(
                ReceiveCoilName="SPINE",
                ReceiveCoilManufacturerName="Lumbar Sentinel",
                ReceiveCoilType="MULTICOIL",
                QuadratureReceiveCoil="NO",
                MultiCoilDefinitionSequence=DicomSequence(
                    [_item(MultiCoilElementName=f"SP{n}", MultiCoilElementUsed="YES") for n in range(1, 5)]
                ),
            )
        ]
    )
    shared.MRTransmitCoilSequence = DicomSequence(
        [
            _item(
                TransmitCoilName="BODY",
                TransmitCoilManufacturerName="Lumbar Sentinel",
                TransmitCoilType="BODY",
            )
        ]
    )
    shared.MRAveragesSequence = DicomSequence([_item(NumberOfAverages=2)])
    if acq.agent:
        shared.ContrastBolusUsageSequence = DicomSequence(
            [
                _item(
                    ContrastBolusAgentNumber=1,
                    ContrastBolusAgentAdministered="YES",
                    ContrastBolusAgentDetected="YES",
                )
            ]
        )
    return shared


def enhanced_mr(
    identity: StudyIdentity, series: ImageSeries, series_number: int, acq: Acquisition
) -> Dataset:
    """One Enhanced MR Image Storage object holding every slice of ``series`` as a frame."""
    ds = base_dataset(identity, series, series_number, EnhancedMRImageStorage)
    ds.SOPInstanceUID = identity.uid("enhanced", series_number)
    ds.InstanceNumber = 1
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    acq_dt = f"{ds.SeriesDate}{ds.SeriesTime}"
    contrast = acq.agent is not None
    ds.ImageType = ["ORIGINAL", "PRIMARY", "POST_CONTRAST" if contrast else "STATIC", "NONE"]
    ft = _frame_type(acq, contrast)
    ft.pop("_flavour")
    for key, value in ft.items():
        setattr(ds, key, value)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = acq_dt
    ds.AcquisitionDuration = 180.0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # MR Pulse Sequence module.
    ds.PulseSequenceName = acq.sequence_name.strip("*")
    ds.MRAcquisitionType = "2D"
    gradient = "GR" in acq.scanning_sequence
    ds.EchoPulseSequence = "GRADIENT" if gradient else "SPIN"
    if not gradient:
        ds.MultipleSpinEcho = "YES"
    ds.MultiPlanarExcitation = "YES"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1
    if contrast:
        ds.ContrastBolusAgentSequence = DicomSequence(
            [
                _item(
                    CodeValue=codes.SCT.GadoterateMeglumine.value,
                    CodingSchemeDesignator="SCT",
                    CodeMeaning=codes.SCT.GadoterateMeglumine.meaning,
                    ContrastBolusAgentNumber=1,
                    ContrastBolusAdministrationRouteSequence=DicomSequence(
                        [_sct(codes.SCT.IntravenousRoute)]
                    ),
                    ContrastBolusIngredientCodeSequence=DicomSequence([_sct(codes.SCT.Gadolinium)]),
                    ContrastBolusVolume=15.0,
                    ContrastBolusIngredientConcentration=279.3,
                )
            ]
        )
    ds.AcquisitionContextSequence = DicomSequence([])
    # Multi-frame dimensions: stack and in-stack position.
    dim_uid = identity.uid("dimension", series_number)
    ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=dim_uid)])
    ds.DimensionIndexSequence = DicomSequence(
        [
            _item(
                DimensionIndexPointer=0x00209056,
                FunctionalGroupPointer=0x00209111,
                DimensionOrganizationUID=dim_uid,
                DimensionDescriptionLabel="Stack ID",
            ),
            _item(
                DimensionIndexPointer=0x00209057,
                FunctionalGroupPointer=0x00209111,
                DimensionOrganizationUID=dim_uid,
                DimensionDescriptionLabel="In-Stack Position Number",
            ),
        ]
    )
    n_frames = series.pixels.shape[0]
    ds.NumberOfFrames = n_frames
    ds.SharedFunctionalGroupsSequence = DicomSequence([_shared_groups(series, acq)])
    frames = []
    for n in range(n_frames):
        frames.append(
            _item(
                FrameContentSequence=DicomSequence(
                    [
                        _item(
                            FrameAcquisitionNumber=1,
                            FrameReferenceDateTime=acq_dt,
                            FrameAcquisitionDateTime=acq_dt,
                            FrameAcquisitionDuration=180000.0,
                            StackID="1",
                            InStackPositionNumber=n + 1,
                            DimensionIndexValues=[1, n + 1],
                        )
                    ]
                ),
                PlanePositionSequence=DicomSequence(
                    [_item(ImagePositionPatient=[round(v, 4) for v in series.positions[n]])]
                ),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    pixel_module(ds, series.pixels.shape[1], series.pixels.shape[2])
    ds.PixelData = np.ascontiguousarray(series.pixels, dtype=np.uint16).tobytes()
    return ds
