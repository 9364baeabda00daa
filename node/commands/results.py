"""`lumbar-sentinel results`: current analysis results, optionally only the suspicious ones."""

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
                        help="only results analysed since (ISO date/time, or 7d, 12h)")
    parser.add_argument("--suspicious", action="store_true",
                        help="only studies suspicious for malignancy")
    parser.add_argument("--all-versions", action="store_true",
                        help="also superseded results (earlier analyses of the same study)")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with read_session(settings) as session:
        rows = result_rows(session, args.since, suspicious=args.suspicious, superseded=args.all_versions)
    emit({"results": rows}, args.format, single=True)
    return 0


def result_rows(session: Session, analysed_since: datetime | None, *, suspicious: bool,
                superseded: bool) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from node.commands.studies import delivery_state
    from node.db.audit import Delivery, LevelFinding, ResultSummary
    from node.db.models import AnalysisResult, Study

    query = (select(AnalysisResult, Study.study_instance_uid, ResultSummary)
             .join(Study, Study.id == AnalysisResult.study_id)
             .join(ResultSummary, ResultSummary.analysis_result_id == AnalysisResult.id)
             .where(AnalysisResult.outcome == "analysed")
             .order_by(AnalysisResult.created_at.desc(), AnalysisResult.id.desc()))
    if not superseded:
        query = query.where(AnalysisResult.superseded_by_id.is_(None))
    if analysed_since is not None:
        query = query.where(AnalysisResult.created_at >= analysed_since)
    if suspicious:
        query = query.where(ResultSummary.suspicious_for_malignancy == "present")
    rows: list[dict[str, Any]] = []
    for result, study_uid, summary in session.execute(query).all():
        flagged = session.scalars(
            select(LevelFinding.level).where(LevelFinding.analysis_result_id == result.id,
                                             LevelFinding.suspicious_for_malignancy == "present")
            .order_by(LevelFinding.id)).all()
        statuses = list(session.scalars(
            select(Delivery.status).where(Delivery.analysis_result_id == result.id)))
        rows.append({
            "study_instance_uid": study_uid,
            "analysis_result_id": result.id,
            "analysed_at": result.created_at,
            "algorithm_version": result.algorithm_version,
            "suspicious": summary.suspicious_for_malignancy,
            "suspicious_levels": " ".join(flagged),
            "multiple_lesions": summary.multiple_lesions,
            "canal_compromise": summary.canal_compromise,
            "superseded_by": result.superseded_by_id,
            "delivery": delivery_state(statuses),
        })
    return rows
