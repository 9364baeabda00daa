"""What the queue's giving up on an ``analyze_study`` job leaves in the study's record."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from node.db.audit import StudyEvent, StudyStage
from node.db.models import Job, JobStatus, Study, StudyStatus
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import MAX_ERROR_CHARS

log = logging.getLogger(__name__)


def analysis_failed(session: Session, job_id: int, status: JobStatus, error: str, now: datetime) -> None:
    """The queue failed an ``analyze_study`` job for good (its handler raised on the last attempt,
    or its worker died then).

    The study becomes ``failed`` with the error as its reason and a dated
    event, instead of staying ``complete`` as if its analysis were still to
    come. A retry (``status`` queued) changes nothing, nor does a study that
    received newer content, is already answered, or has another analysis
    job queued or running (its answer is the one to wait for).
    """
    if status != JobStatus.FAILED:
        return
    study_id = session.scalar(select(Job.study_id).where(Job.id == job_id))
    if study_id is None:
        return
    other = (select(Job.id)
             .where(Job.kind == ANALYZE_STUDY, Job.study_id == study_id, Job.id != job_id,
                    Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])))
    reason = f"the analysis failed: {error}"[:MAX_ERROR_CHARS]
    failed = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.status == StudyStatus.COMPLETE, ~exists(other))
        .values(status=StudyStatus.FAILED, skip_reason=reason)
        .returning(Study.study_instance_uid)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if failed is None:
        return
    session.add(StudyEvent(study_id=study_id, at=now, stage=StudyStage.ANALYSIS_FAILED,
                           detail=f"job {job_id}: {error}"[:MAX_ERROR_CHARS]))
    log.error("study %s: analysis job %d failed for good; `reanalyze` runs it again", failed, job_id)
