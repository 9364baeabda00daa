"""Decide when a study is complete and queue exactly one analysis for it.

A study is complete once ``quiet_period`` has passed without a new instance.
The switch from ``receiving`` to ``complete`` is a conditional
``UPDATE ... WHERE status = 'receiving' AND last_received_at <= cutoff
RETURNING``: when several monitors (several node processes on one
PostgreSQL) scan at once, the row lock makes the others re-check the
condition and skip the study, so only the winner queues the job, in the same
transaction. A late instance puts the study back to ``receiving`` (storage
does that), so it completes again and is analysed again.

A study is not complete either while an association that stored into it
(duplicates count) is still open: a sender may pause between series for
longer than the quiet period. A row left open by a node that crashed is
closed when that node starts again (``AssociationLog.sweep``); one whose node
never returns holds the study for at most ``study.association_hold`` after
that association's last instance into it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import (
    Association,
    AssociationResult,
    AssociationStudy,
    Job,
    JobStatus,
    Study,
    StudyStatus,
    utcnow,
)
from node.periodic import Periodic
from node.queue.jobs import enqueue
from node.settings import QueueSettings, StudySettings

log = logging.getLogger(__name__)

ANALYZE_STUDY = "analyze_study"


class CompletionMonitor:
    """A thread that runs :meth:`scan_once` every ``completion_poll_interval``."""

    def __init__(
        self,
        study_settings: StudySettings,
        queue_settings: QueueSettings,
        sessions: sessionmaker[Session],
    ) -> None:
        self._study = study_settings
        self._queue = queue_settings
        self._sessions = sessions
        self._periodic = Periodic("completion monitor", self._scan, study_settings.completion_poll_interval,
                                (SQLAlchemyError,))

    def scan_once(self, session: Session, now: datetime | None = None) -> list[int]:
        """Complete the studies that went quiet; return the analysis jobs queued for them.

        Runs in the caller's transaction; commit it to publish the jobs.
        """
        now = now or utcnow()
        cutoff = now - self._study.quiet_period
        sending = exists().where(
            AssociationStudy.study_id == Study.id,
            AssociationStudy.association_id == Association.id,
            Association.result == AssociationResult.OPEN,
            AssociationStudy.last_stored_at > now - self._study.association_hold,
        )
        completed = session.execute(
            update(Study)
            .where(Study.status == StudyStatus.RECEIVING, Study.last_received_at <= cutoff, ~sending)
            .values(status=StudyStatus.COMPLETE, completed_at=now)
            .returning(Study.id, Study.study_instance_uid)
            .execution_options(synchronize_session=False)
        ).all()
        job_ids: list[int] = []
        for study_id, study_uid in sorted(completed):
            job_id = self._reuse_queued(session, study_id, now)
            if job_id is None:
                job_id = enqueue(
                    session, ANALYZE_STUDY, study_id, {"study_instance_uid": study_uid},
                    max_attempts=self._queue.max_attempts, now=now,
                ).id
                log.info("study %s complete: analysis job %d queued", study_uid, job_id)
            else:
                log.info("study %s complete again: its queued analysis job %d will see the new instances",
                         study_uid, job_id)
            job_ids.append(job_id)
        return job_ids

    @staticmethod
    def _reuse_queued(session: Session, study_id: int, now: datetime) -> int | None:
        # An analysis still waiting to start reads the study when it runs, so it
        # covers late instances too. Updating it (rather than reading) locks it:
        # a worker claiming it at this moment makes us queue a new one instead.
        # New content starts it afresh: a job waiting out a retry's backoff runs now,
        # with all its attempts.
        row = session.execute(
            update(Job)
            .where(Job.kind == ANALYZE_STUDY, Job.study_id == study_id, Job.status == JobStatus.QUEUED)
            .values(updated_at=now, run_after=now, attempts=0)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).first()
        return None if row is None else int(row[0])

    def start(self) -> None:
        self._periodic.start()

    @property
    def died(self) -> bool:
        return self._periodic.died

    def stop(self, timeout: float = 10.0) -> None:
        self._periodic.stop(timeout)

    def _scan(self) -> None:
        with self._sessions.begin() as session:
            self.scan_once(session)
