"""`lumbar-sentinel reanalyze UID`: queue a new analysis of a stored study.

The study goes back to ``complete`` and gets an ``analyze_study`` job, as
when its quiet period ends; the new result supersedes the current one and is
delivered like any other (its SR lists the earlier one as predecessor).
A study any of whose current images retention deleted is refused (exit 3):
the PACS sends it again whole, and it is analysed once it has arrived. With
an analysis running and a newer one queued (new content arrived meanwhile),
the queued one is the one that answers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from node.commands.admin import add_format, emit, write_session
from node.settings import Settings

NOT_FOUND = 1
IMAGES_DELETED = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_uid", metavar="UID", help="Study Instance UID")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import func, select

    from node.db.audit import StudyEvent, StudyStage
    from node.db.models import Instance, Job, JobStatus, Series, Study, StudyStatus, utcnow
    from node.queue.completion import ANALYZE_STUDY
    from node.queue.jobs import enqueue
    from node.storage.retention import deleted_by_retention

    with write_session(settings) as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == args.study_uid)
                                .with_for_update()).one_or_none()
        if study is None:
            print(f"reanalyze: no study {args.study_uid} in the database", file=sys.stderr)
            return NOT_FOUND
        # Any current image, not only the last one received: part of a study sent again after
        # retention is not the study, and its analysis would only be withheld again.
        deleted = session.scalar(select(func.count(Instance.id)).join(Series).where(
            Series.study_id == study.id, Instance.is_current.is_(True),
            deleted_by_retention(Series.study_id, Instance.received_at)))
        if deleted:
            print(f"reanalyze: {deleted} image(s) of study {args.study_uid} were deleted by retention and "
                  "not sent again (its results stay); send the whole study again from the PACS: it is "
                  "analysed once it has arrived", file=sys.stderr)
            return IMAGES_DELETED
        now = utcnow()
        row: dict[str, Any]
        # The newest job answers: a running one's result is not recorded while a newer one waits.
        queued = session.scalars(select(Job).where(Job.kind == ANALYZE_STUDY, Job.study_id == study.id,
                                                   Job.status == JobStatus.QUEUED)
                                 .order_by(Job.id.desc())).first()
        running = session.scalars(select(Job).where(
            Job.kind == ANALYZE_STUDY, Job.study_id == study.id, Job.status == JobStatus.RUNNING,
            Job.lease_expires_at > now)).first() if study.status == StudyStatus.COMPLETE else None
        if study.status == StudyStatus.RECEIVING:
            row = {"study_instance_uid": study.study_instance_uid, "job_id": None,
                   "note": "still receiving: it is analysed when its quiet period ends"}
        elif running is not None and queued is None:
            # A second job would find the study answered by this one and record nothing.
            row = {"study_instance_uid": study.study_instance_uid, "job_id": running.id,
                   "note": "an analysis of this study is running now: its result becomes the current one"}
        else:
            if queued is not None:
                queued.run_after = queued.updated_at = now
                job_id, note = queued.id, "an analysis was already queued: it runs now"
            else:
                payload = {"study_instance_uid": study.study_instance_uid, "requested_by": "reanalyze"}
                job_id = enqueue(session, ANALYZE_STUDY, study.id, payload,
                                 max_attempts=settings.queue.max_attempts, now=now).id
                note = "analysis queued"
            study.status, study.skip_reason = StudyStatus.COMPLETE, None  # its answer is to come
            session.add(StudyEvent(study_id=study.id, at=now, stage=StudyStage.REANALYSIS_REQUESTED,
                                   detail=f"job {job_id}"))
            row = {"study_instance_uid": study.study_instance_uid, "job_id": job_id, "note": note}
    emit({"reanalyze": [row]}, args.format, single=True)
    return 0
