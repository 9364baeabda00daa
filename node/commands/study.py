"""`lumbar-sentinel study UID`: everything the database knows about one study.

Associations that sent it, its series and their classification, every
analysis (superseded ones too), findings per level, result objects,
deliveries with each attempt and each object's remote status, jobs, and the
time-ordered history (the ``v_study_history`` view).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from node.commands.admin import add_format, emit, read_session
from node.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

NOT_FOUND = 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_uid", metavar="UID", help="Study Instance UID")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with read_session(settings) as session:
        sections = study_sections(session, args.study_uid)
    if sections is None:
        print(f"study: no study {args.study_uid} in the database", file=sys.stderr)
        return NOT_FOUND
    emit(sections, args.format)
    return 0


def _columns(row: Any, names: str) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names.split()}


def study_sections(session: Session, study_uid: str) -> dict[str, list[dict[str, Any]]] | None:
    from sqlalchemy import func, select, text

    from node.db.audit import (
        Delivery,
        DeliveryAttempt,
        DeliveryAttemptObject,
        LevelFinding,
        ResultObjectRow,
        ResultSummary,
    )
    from node.db.models import AnalysisResult, Association, AssociationStudy, Instance, Job, Series, Study

    study = session.scalars(select(Study).where(Study.study_instance_uid == study_uid)).one_or_none()
    if study is None:
        return None
    sections: dict[str, list[dict[str, Any]]] = {}
    sections["study"] = [_columns(study, "study_instance_uid status first_received_at last_received_at "
                                         "completed_at skip_reason")]
    # through association_studies too: an association that only re-sent the study (all duplicates)
    # stored no instance row, yet it held the study's completion while it was open
    associations = session.scalars(
        select(Association).where(Association.id.in_(
            select(Instance.association_id).join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == study.id)
            .union(select(AssociationStudy.association_id).where(AssociationStudy.study_id == study.id))))
        .order_by(Association.started_at)).all()
    sections["associations"] = [
        _columns(a, "id calling_ae called_ae peer_address tls started_at ended_at result instances_received")
        for a in associations]
    series_rows = session.execute(
        select(Series, func.count(Instance.id))
        .outerjoin(Instance, (Instance.series_id == Series.id) & Instance.is_current.is_(True))
        .where(Series.study_id == study.id).group_by(Series.id).order_by(Series.id)).all()
    sections["series"] = [
        {**_columns(s, "series_instance_uid modality series_number description plane sequence"),
         "instances": n, "classification": s.classification_reason} for s, n in series_rows]
    results = session.scalars(select(AnalysisResult).where(AnalysisResult.study_id == study.id)
                              .order_by(AnalysisResult.id)).all()
    sections["analyses"] = []
    for result in results:
        summary = session.get(ResultSummary, result.id)
        sections["analyses"].append({
            **_columns(result, "id job_id created_at outcome reason algorithm_version superseded_by_id"),
            "suspicious": None if summary is None else summary.suspicious_for_malignancy,
            "suspicious_levels": None if summary is None else summary.suspicious_level_count,
            "impression": None if summary is None else summary.impression,
        })
    result_ids = [r.id for r in results]
    sections["findings"] = [
        _columns(f, "analysis_result_id level marrow_infiltration cortical_destruction soft_tissue_extension "
                    "compression_fracture pathologic_fracture_pattern suspicious_for_malignancy genant_grade "
                    "height_loss_pct ha_mm hm_mm hp_mm lesion_fraction_pct t1_marrow_disc_ratio")
        for f in session.scalars(select(LevelFinding).where(LevelFinding.analysis_result_id.in_(result_ids))
                                 .order_by(LevelFinding.analysis_result_id, LevelFinding.id))]
    sections["result_objects"] = [
        _columns(o, "id analysis_result_id kind sop_class_uid sop_instance_uid series_instance_uid "
                    "path sha256")
        for o in session.scalars(select(ResultObjectRow)
                                 .where(ResultObjectRow.analysis_result_id.in_(result_ids))
                                 .order_by(ResultObjectRow.id))]
    deliveries = session.scalars(select(Delivery).where(Delivery.study_id == study.id)
                                 .order_by(Delivery.id)).all()
    sections["deliveries"] = [
        {**_columns(d, "id analysis_result_id destination called_ae host port status attempts "
                       "next_attempt_at delivered_at last_error"),
         "objects": len(d.items),
         "acknowledged": sum(item.acknowledged_at is not None for item in d.items)}
        for d in deliveries]
    attempts = session.scalars(select(DeliveryAttempt)
                               .where(DeliveryAttempt.delivery_id.in_([d.id for d in deliveries]))
                               .order_by(DeliveryAttempt.id)).all()
    sections["attempts"] = [
        _columns(a, "id delivery_id destination attempt started_at finished_at outcome error retry_at")
        for a in attempts]
    sections["attempt_objects"] = [
        {"attempt_id": o.attempt_id, "sop_instance_uid": o.sop_instance_uid,
         "dimse_status": None if o.dimse_status is None else f"0x{o.dimse_status:04X}", "error": o.error}
        for o in session.scalars(select(DeliveryAttemptObject)
                                 .where(DeliveryAttemptObject.attempt_id.in_([a.id for a in attempts]))
                                 .order_by(DeliveryAttemptObject.id))]
    sections["jobs"] = [
        _columns(j, "id kind status attempts max_attempts run_after created_at finished_at last_error")
        for j in session.scalars(select(Job).where(Job.study_id == study.id).order_by(Job.id))]
    sections["history"] = [
        {"at": _utc(row.at), "stage": row.stage, "detail": row.detail} for row in session.execute(
            text("SELECT at, stage, detail FROM v_study_history WHERE study_instance_uid = :uid "
                 "ORDER BY at, stage"), {"uid": study_uid})]
    return sections


def _utc(value: datetime | str) -> datetime:
    # SQLite hands a view's timestamps back as text, without the column type that parses them.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
