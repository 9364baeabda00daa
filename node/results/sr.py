"""The Comprehensive 3D SR: a TID 1500 Measurement Report of the findings (results contract).

One Volumetric ROI measurement group (TID 1411) per reported level, pointing
at that level's body segment in the SEG; one study-level group (TID 1501);
the impression as TEXT in the report's Qualitative Evaluations container
(TID 1500 row 12); the device observer is the product at its version.

A value that could not be measured (``null`` in findings.json) is left out:
highdicom writes a NUM only with a measured value, and a receiver reads a
missing NUM as "not measured", the same meaning as the JSON ``null``.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from analysis.findings import LevelFinding, StudyFindings
from analysis.results import SignState
from analysis.volume import Sequence
from node.results import ResultKind, ResultObject
from node.results import codes as lc
from node.results.identity import MANUFACTURER, PRODUCT, SR_SERIES_NUMBER, ResultIdentity, character_set
from node.results.seg import SegmentPlan, tracking_uid

SERIES_DESCRIPTION = "Lumbar Sentinel measurement report (triage aid)"


def _evaluation(name: Code, state: SignState) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=name, value=lc.state_code(state))


def _measurement(name: Code, value: float | None, unit: Code) -> list[hd.sr.Measurement]:
    if value is None:
        return []
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit)]


def _algorithm(identity: ResultIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=PRODUCT, version=identity.algorithm_version)


def level_group(
    level: LevelFinding,
    segment: hd.sr.ReferencedSegment,
    identity: ResultIdentity,
    t1_analysed: bool,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The measurement group of one vertebral level."""
    algorithm = _algorithm(identity)
    measurements = [
        *_measurement(lc.HA, level.ha_mm, lc.MILLIMETER),
        *_measurement(lc.HM, level.hm_mm, lc.MILLIMETER),
        *_measurement(lc.HP, level.hp_mm, lc.MILLIMETER),
        *_measurement(lc.HLOSS, level.height_loss_pct, lc.PERCENT),
        *_measurement(lc.GENANT, level.genant_grade, lc.GRADE_UNIT),
        *_measurement(lc.LESFRAC, level.lesion_fraction_pct, lc.PERCENT),
    ]
    if t1_analysed:
        measurements += _measurement(lc.T1MD, level.t1_marrow_disc_ratio, lc.NO_UNITS)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(identity, level.level), identifier=level.level
        ),
        referenced_segment=segment,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(lc.level_site(level.level))],
        measurements=measurements,
        qualitative_evaluations=[
            _evaluation(lc.MARROW, level.marrow_infiltration),
            _evaluation(lc.CORTEX, level.cortical_destruction),
            _evaluation(lc.STE, level.soft_tissue_extension),
            _evaluation(lc.VCF, level.compression_fracture),
            _evaluation(lc.PATHFX, level.pathologic_fracture_pattern),
            _evaluation(lc.SUSPMAL, level.suspicious_for_malignancy),
        ],
    )


def study_group(
    findings: StudyFindings, identity: ResultIdentity
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    summary = findings.study
    algorithm = _algorithm(identity)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(identity, lc.STUDY_TRACKING_ID), identifier=lc.STUDY_TRACKING_ID
        ),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(lc.STUDY_SITE)],
        measurements=_measurement(lc.NSUSP, summary.suspicious_level_count, lc.LEVELS_UNIT),
        qualitative_evaluations=[
            _evaluation(lc.SUSPMAL, summary.suspicious_for_malignancy),
            _evaluation(lc.MULTI, summary.multiple_lesions),
            _evaluation(lc.CANAL, summary.canal_compromise),
        ],
    )


def _impression(text: str) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=lc.QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.TextContentItem(lc.IMPRESSION, text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)]
    )
    return container


def _observer(identity: ResultIdentity) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=identity.device_uid,
        name=identity.device_name,
        manufacturer_name=MANUFACTURER,
        model_name=PRODUCT,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _predecessor(study_instance_uid: str, earlier: ResultObject) -> Dataset:
    if not isinstance(earlier, ResultObject):
        raise TypeError(f"predecessors must hold ResultObject, got {type(earlier).__name__}")
    if earlier.kind != ResultKind.SR:
        raise ValueError(f"predecessors: {earlier.sop_instance_uid} is a {earlier.kind}, not an SR")
    ds = Dataset()
    ds.SOPClassUID = earlier.sop_class_uid
    ds.SOPInstanceUID = earlier.sop_instance_uid
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = earlier.series_instance_uid
    return ds


def build_sr(
    findings: StudyFindings,
    seg: hd.seg.Segmentation | None,
    segments: Seq[SegmentPlan],
    evidence: Seq[Dataset],
    identity: ResultIdentity,
    predecessors: Seq[ResultObject] = (),
) -> hd.sr.Comprehensive3DSR:
    """The report of ``findings``; each level's group references its body segment in ``seg``.

    ``evidence`` are the source images (their patient and study modules are
    copied); ``predecessors`` are earlier SRs of the same study this one replaces.
    """
    if not isinstance(findings, StudyFindings):
        raise TypeError(f"findings must be StudyFindings, got {type(findings).__name__}")
    if not isinstance(identity, ResultIdentity):
        raise TypeError(f"identity must be a ResultIdentity, got {type(identity).__name__}")
    if not evidence:
        raise ValueError("evidence: the SR needs the source images it reports on")
    body_segment = {p.level: p.number for p in segments if not p.is_lesion}
    t1_analysed = dict(findings.series_used).get(Sequence.T1.value) is not None
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    # the series the SEG was drawn on (a SEG references exactly the series of its source images)
    source_series_uid = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) if seg is not None else ""
    for level in findings.levels:
        number = body_segment.get(level.level)
        if seg is None or number is None:
            raise ValueError(f"segments: no body segment for reported level {level.level}")
        segment = hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        )
        groups.append(level_group(level, segment, identity, t1_analysed))
    groups.append(study_group(findings, identity))
    report = hd.sr.MeasurementReport(
        observation_context=_observer(identity),
        procedure_reported=lc.PROCEDURE_REPORTED,
        imaging_measurements=groups,
        title=lc.REPORT_TITLE,
    )
    report[0].ContentSequence.append(_impression(findings.study.impression))
    return hd.sr.Comprehensive3DSR(
        evidence=[*evidence, *([seg] if seg is not None else [])],
        content=report[0],
        series_instance_uid=identity.uid("sr", "series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=identity.uid("sr", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        previous_versions=[_predecessor(findings.study_instance_uid, p) for p in predecessors] or None,
        coding_schemes=[lc.coding_scheme_item()],
        series_description=SERIES_DESCRIPTION,
        specific_character_set=character_set(evidence[0]),
        manufacturer_model_name=PRODUCT,
        software_versions=identity.algorithm_version,
        content_date=identity.created.date(),
        content_time=identity.created.time(),
        series_date=identity.created.date(),
        series_time=identity.created.time(),
    )
