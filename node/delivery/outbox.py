"""The durable outbox: result objects, findings as rows, and one delivery job per destination.

:func:`publish_results` is what the analysis job calls after recording a
result, in the same transaction: if that transaction commits, the objects,
the per-level rows and every delivery (with its queued ``deliver_results``
job) exist together; if it rolls back, none do. Calling it again for the
same result adds nothing (a job re-run after a lost lease).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from node.db.audit import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    LevelFinding,
    ResultObjectRow,
    ResultSummary,
    StudyEvent,
    StudyStage,
)
from node.db.models import AnalysisResult, Association, Instance, Job, JobStatus, Series, utcnow
from node.delivery.routes import Route, routes_for
from node.queue.jobs import enqueue
from node.results import ResultKind, ResultObject
from node.settings import DeliverySettings

log = logging.getLogger(__name__)

DELIVER_RESULTS = "deliver_results"

_SIGNS = ("marrow_infiltration", "cortical_destruction", "soft_tissue_extension", "compression_fracture",
          "pathologic_fracture_pattern", "suspicious_for_malignancy")
_MEASURES = ("genant_grade", "height_loss_pct", "ha_mm", "hm_mm", "hp_mm", "lesion_fraction_pct",
             "t1_marrow_disc_ratio")


def publish_results(
    session: Session,
    settings: DeliverySettings,
    analysis_result_id: int,
    objects: Sequence[ResultObject],
    *,
    results_root: Path | None = None,
    calling_ae: str | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Record ``objects`` and the result's findings as rows; queue a delivery per destination.

    ``calling_ae`` is the AE title that sent the study (for "back to the
    sender"); None looks it up from the study's most recent instance.
    Object paths under ``results_root`` are stored relative to it. Returns
    the ids of the delivery jobs queued; the caller commits.
    """
    now = now or utcnow()
    result = session.get(AnalysisResult, analysis_result_id)
    if result is None:
        raise ValueError(f"analysis_result_id {analysis_result_id} does not exist")
    if result.outcome != "analysed":
        raise ValueError(f"analysis result {analysis_result_id} is {result.outcome!r}, not analysed")
    record_findings(session, result)
    root = None if results_root is None else results_root.resolve()
    rows = record_objects(session, result.id, objects, root, now)
    if not _has_event(session, result):
        session.add(StudyEvent(study_id=result.study_id, at=now, stage=StudyStage.ANALYSED,
                               detail=f"result {result.id}: {len(rows)} result object(s)"))
    if calling_ae is None:
        calling_ae = sender_ae(session, result.study_id)
    job_ids: list[int] = []
    for route in routes_for(settings, calling_ae):
        chosen = [row for row in rows if row.kind in route.objects]
        if chosen:
            job_id = enqueue_delivery(session, settings, result, route, chosen, now)
            if job_id is not None:
                job_ids.append(job_id)
    if settings.return_to_sender.enabled and calling_ae is not None and not any(
            route.return_to_ae for route in routes_for(settings, calling_ae)):
        log.warning("study of result %d came from %s, which has no return route: not sent back",
                    result.id, calling_ae)
    return job_ids


def _has_event(session: Session, result: AnalysisResult) -> bool:
    return session.scalar(
        select(StudyEvent.id).where(StudyEvent.study_id == result.study_id,
                                    StudyEvent.stage == StudyStage.ANALYSED,
                                    StudyEvent.detail.startswith(f"result {result.id}:")).limit(1)
    ) is not None


def record_findings(session: Session, result: AnalysisResult) -> None:
    """The findings JSON of ``result`` as level and summary rows (once)."""
    if session.get(ResultSummary, result.id) is not None:
        return
    findings: dict[str, Any] = result.findings
    study = findings.get("study")
    if not isinstance(study, dict) or not isinstance(findings.get("levels"), list):
        raise ValueError(f"analysis result {result.id} has no findings (levels and study) to record")
    session.add(ResultSummary(
        analysis_result_id=result.id,
        suspicious_for_malignancy=study["suspicious_for_malignancy"],
        multiple_lesions=study["multiple_lesions"],
        canal_compromise=study["canal_compromise"],
        suspicious_level_count=int(study["suspicious_level_count"]),
        impression=study["impression"],
    ))
    for level in findings["levels"]:
        session.add(LevelFinding(
            analysis_result_id=result.id, level=level["level"],
            **{name: level[name] for name in _SIGNS},
            **{name: level.get(name) for name in _MEASURES},
        ))
    session.flush()


def record_objects(session: Session, analysis_result_id: int, objects: Sequence[ResultObject],
                   results_root: Path | None, now: datetime) -> list[ResultObjectRow]:
    """One row per object (existing rows reused), in the order given."""
    existing = {row.sop_instance_uid: row for row in session.scalars(
        select(ResultObjectRow).where(ResultObjectRow.analysis_result_id == analysis_result_id))}
    rows: list[ResultObjectRow] = []
    for obj in objects:
        row = existing.get(obj.sop_instance_uid)
        if row is None:
            path = obj.path
            if results_root is not None and path.is_absolute() and path.is_relative_to(results_root):
                path = path.relative_to(results_root)
            row = ResultObjectRow(
                analysis_result_id=analysis_result_id, kind=obj.kind.value, sop_class_uid=obj.sop_class_uid,
                sop_instance_uid=obj.sop_instance_uid, series_instance_uid=obj.series_instance_uid,
                path=str(path), sha256=obj.sha256, created_at=now,
            )
            session.add(row)
            existing[obj.sop_instance_uid] = row
        rows.append(row)
    session.flush()
    return rows


def current_result_id(session: Session, study_id: int) -> int | None:
    """The id of the study's current analysed result (None when it has none)."""
    return session.scalar(
        select(AnalysisResult.id)
        .where(AnalysisResult.study_id == study_id, AnalysisResult.outcome == "analysed",
               AnalysisResult.superseded_by_id.is_(None))
        .order_by(AnalysisResult.id.desc()).limit(1))


def last_reported_objects(session: Session, study_id: int, results_root: Path) -> tuple[ResultObject, ...]:
    """The objects of the study's newest analysed result, superseded or not: what a re-analysis
    lists as predecessors.

    A skipped analysis in between (the study sent again without its sagittal series) supersedes
    the analysed result but writes no SR: the next SR must still name the last one the PACS got.
    """
    result_id = session.scalar(
        select(AnalysisResult.id)
        .where(AnalysisResult.study_id == study_id, AnalysisResult.outcome == "analysed")
        .order_by(AnalysisResult.id.desc()).limit(1))
    if result_id is None:
        return ()
    rows = session.scalars(select(ResultObjectRow).where(ResultObjectRow.analysis_result_id == result_id)
                           .order_by(ResultObjectRow.id))
    return tuple(ResultObject(ResultKind(row.kind), results_root / row.path, row.sop_class_uid,
                              row.sop_instance_uid, row.series_instance_uid, row.sha256) for row in rows)


def sender_ae(session: Session, study_id: int) -> str | None:
    """The calling AE title that sent the study's most recent instance (None: not received over DICOM)."""
    title: str | None = session.scalar(
        select(Association.calling_ae)
        .join(Instance, Instance.association_id == Association.id)
        .join(Series, Series.id == Instance.series_id)
        .where(Series.study_id == study_id)
        .order_by(Instance.received_at.desc(), Instance.id.desc())
        .limit(1)
    )
    return None if title is None else title.strip()


def enqueue_delivery(session: Session, settings: DeliverySettings, result: AnalysisResult, route: Route,
                     rows: Sequence[ResultObjectRow], now: datetime) -> int | None:
    """A delivery of ``rows`` to ``route`` and its job; None if that delivery exists already.

    An object the destination already acknowledged, byte for byte the same
    (a re-run writes the same objects under the same UIDs), counts as
    acknowledged here too; when that is every object no job is queued.
    """
    if session.scalar(select(Delivery.id).where(Delivery.analysis_result_id == result.id,
                                                Delivery.destination == route.name)) is not None:
        return None
    delivery = Delivery(
        analysis_result_id=result.id, study_id=result.study_id, destination=route.name,
        called_ae=route.called_ae, host=route.host, port=route.port, return_to_ae=route.return_to_ae,
        status=DeliveryStatus.QUEUED, attempts=0, next_attempt_at=now, created_at=now, updated_at=now,
    )
    session.add(delivery)
    session.flush()
    pending = 0
    for row in rows:
        earlier = _acknowledged(session, route.name, row)
        session.add(DeliveryItem(delivery_id=delivery.id, result_object_id=row.id,
                                 acknowledged_at=None if earlier is None else earlier.acknowledged_at,
                                 dimse_status=None if earlier is None else earlier.dimse_status))
        pending += earlier is None
    if not pending:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = delivery.updated_at = now
        delivery.next_attempt_at = None
        session.add(StudyEvent(study_id=result.study_id, at=now, stage=StudyStage.DELIVERED,
                               detail=f"delivery {delivery.id} to {route.name}: every object was "
                                      "acknowledged by an earlier delivery"))
        session.flush()
        return None
    job = enqueue(session, DELIVER_RESULTS, result.study_id, {"delivery_id": delivery.id},
                  max_attempts=settings.retry.max_attempts, now=now)
    delivery.job_id = job.id
    session.flush()
    log.info("delivery %d of result %d to %s queued as job %d", delivery.id, result.id, route.describe(),
             job.id)
    return job.id


def _acknowledged(session: Session, destination: str, row: ResultObjectRow) -> DeliveryItem | None:
    """The earlier acknowledgement of the same object (UID and content) by ``destination``, if any."""
    return session.scalars(
        select(DeliveryItem)
        .join(Delivery, Delivery.id == DeliveryItem.delivery_id)
        .join(ResultObjectRow, ResultObjectRow.id == DeliveryItem.result_object_id)
        .where(Delivery.destination == destination, DeliveryItem.acknowledged_at.is_not(None),
               ResultObjectRow.sop_instance_uid == row.sop_instance_uid, ResultObjectRow.sha256 == row.sha256)
        .order_by(DeliveryItem.id).limit(1)
    ).first()


def requeue(session: Session, settings: DeliverySettings, delivery: Delivery, *, again: bool,
            reason: str, now: datetime | None = None) -> int | None:
    """Send ``delivery`` again (``resend``); the job id, or None when nothing is left to send.

    Only unacknowledged objects are sent, unless ``again`` clears the
    acknowledgements so that every object is sent once more. A delivery whose
    job is running is left to it (the job id is returned).
    """
    now = now or utcnow()
    if again:
        session.execute(update(DeliveryItem).where(DeliveryItem.delivery_id == delivery.id)
                        .values(acknowledged_at=None, dimse_status=None)
                        .execution_options(synchronize_session=False))
    elif delivery.status == DeliveryStatus.DELIVERED:
        return None
    job = session.get(Job, delivery.job_id) if delivery.job_id is not None else None
    if job is not None and job.status == JobStatus.RUNNING:
        return job.id
    if job is not None and job.status == JobStatus.QUEUED:
        # A fresh job replaces it, so `give_up_after` and the attempts count from this
        # request; made due now, the old one finds the delivery is not its own and ends.
        job.run_after = now
        job.updated_at = now
    job_id = enqueue(session, DELIVER_RESULTS, delivery.study_id, {"delivery_id": delivery.id},
                     max_attempts=settings.retry.max_attempts, now=now).id
    delivery.job_id = job_id
    delivery.status = DeliveryStatus.QUEUED
    delivery.next_attempt_at = now
    delivery.updated_at = now
    delivery.delivered_at = None if again else delivery.delivered_at
    session.add(StudyEvent(study_id=delivery.study_id, at=now, stage=StudyStage.RESEND_REQUESTED,
                           detail=f"delivery {delivery.id} to {delivery.destination}: {reason}"))
    session.flush()
    return job_id
