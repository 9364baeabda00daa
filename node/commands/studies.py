"""`lumbar-sentinel studies`: recent studies, their state, findings summary and delivery state."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from node.commands.admin import add_format, emit, read_session, since
from node.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=since, default=None, metavar="WHEN",
                        help="only studies received since (ISO date/time, or 7d, 12h)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise SystemExit("studies: --limit must be at least 1")
    with read_session(settings) as session:
        rows = study_rows(session, args.since, args.limit)
    emit({"studies": rows}, args.format, single=True)
    return 0


def delivery_state(statuses: list[str]) -> str:
    """One word for a result's deliveries: delivered, pending, dead, partly dead, none.

    ``dead`` only when every destination's delivery is a dead letter: with one
    delivered or still pending elsewhere, ``dead`` read as nobody got the result.
    """
    if not statuses:
        return "none"
    if all(s == "delivered" for s in statuses):
        return "delivered"
    if "dead" in statuses:
        return "dead" if all(s == "dead" for s in statuses) else "partly dead"
    return "pending"


def study_rows(session: Session, received_since: datetime | None, limit: int) -> list[dict[str, Any]]:
    from sqlalchemy import func, select

    from node.db.audit import Delivery, ResultSummary
    from node.db.models import AnalysisResult, Instance, Job, Series, Study
    from node.queue.completion import ANALYZE_STUDY

    # the newest analysis job: a study left `complete` by a job that failed for good says so
    analysis_job = (select(Job.status).where(Job.kind == ANALYZE_STUDY, Job.study_id == Study.id)
                    .order_by(Job.id.desc()).limit(1).correlate(Study).scalar_subquery())
    series_count = (select(func.count(Series.id)).where(Series.study_id == Study.id)
                    .correlate(Study).scalar_subquery())
    instance_count = (select(func.count(Instance.id)).join(Series, Series.id == Instance.series_id)
                      .where(Series.study_id == Study.id, Instance.is_current.is_(True))
                      .correlate(Study).scalar_subquery())
    query = (select(Study, series_count, instance_count, analysis_job)
             .order_by(Study.last_received_at.desc(), Study.id.desc()))
    if received_since is not None:
        query = query.where(Study.last_received_at >= received_since)
    rows: list[dict[str, Any]] = []
    for study, n_series, n_instances, job_status in session.execute(query.limit(limit)).all():
        current = session.scalars(
            select(AnalysisResult).where(AnalysisResult.study_id == study.id,
                                         AnalysisResult.superseded_by_id.is_(None))
            .order_by(AnalysisResult.id.desc()).limit(1)).first()
        summary = None if current is None else session.get(ResultSummary, current.id)
        statuses = [] if current is None else list(session.scalars(
            select(Delivery.status).where(Delivery.analysis_result_id == current.id)))
        rows.append({
            "study_instance_uid": study.study_instance_uid,
            "status": study.status,
            "received_at": study.first_received_at,
            "last_received_at": study.last_received_at,
            "series": n_series,
            "instances": n_instances,
            "analysis_job": job_status,
            "analysed_at": None if current is None else current.created_at,
            "outcome": None if current is None else current.outcome,
            "suspicious": None if summary is None else summary.suspicious_for_malignancy,
            "suspicious_levels": None if summary is None else summary.suspicious_level_count,
            "delivery": (None if current is None or current.outcome != "analysed"
                         else delivery_state(statuses)),
        })
    return rows
