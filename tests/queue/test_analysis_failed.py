"""An analysis job the queue gives up on leaves the study ``failed`` with the reason, not ``complete``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from node.db.audit import StudyEvent, StudyStage
from node.db.engine import session_factory
from node.db.models import Job, JobStatus, Study, StudyStatus
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import enqueue
from node.queue.worker import WorkerPool
from node.settings import QueueSettings, Settings
from node.tasks import build_failure_hooks, build_handlers
from node.tasks.analysis_failed import analysis_failed
from tests.queue.helpers import SAGITTAL, add_study, register_series, wait_until, write_series

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _study_with_a_lost_file(session: Session, root: Path) -> int:
    study_uid = generate_uid()
    study_id = add_study(session, study_uid, T0, StudyStatus.COMPLETE)
    series_uid, paths = write_series(root, study_uid, "T1", SAGITTAL)
    register_series(session, root, study_id, series_uid, paths)
    paths[1].unlink()  # gone for good: every attempt fails
    return study_id


def test_a_study_whose_analysis_fails_on_every_attempt_is_failed_with_the_reason(
    engine: Engine, tmp_path: Path
) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        study_id = _study_with_a_lost_file(session, tmp_path)
        job_id = enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=2).id
    queue = QueueSettings(workers=1, poll_interval=timedelta(seconds=0.05), lease=timedelta(seconds=30),
                          heartbeat=timedelta(seconds=5), backoff_base=timedelta(seconds=0.1),
                          backoff_max=timedelta(seconds=0.1))
    settings = Settings.model_validate({"storage": {"root": tmp_path, "results": tmp_path / "results"}})
    pool = WorkerPool(queue, sessions, build_handlers(settings), "test", on_failure=build_failure_hooks())
    pool.start()
    try:
        wait_until(lambda: _job_status(sessions(), job_id) == JobStatus.FAILED, "the job to fail for good")
    finally:
        pool.stop(10)
    with sessions() as session:
        study = session.get_one(Study, study_id)
        events = session.scalars(select(StudyEvent).where(StudyEvent.study_id == study_id)).all()
    assert study.status == StudyStatus.FAILED
    assert study.skip_reason is not None and study.skip_reason.startswith("the analysis failed: ")
    assert "No such file" in study.skip_reason
    assert [(e.stage, (e.detail or "").split(":")[0]) for e in events] == [
        (StudyStage.ANALYSIS_FAILED, f"job {job_id}")
    ]


def _job_status(session: Session, job_id: int) -> str:
    with session:
        return session.get_one(Job, job_id).status


def test_a_retry_or_a_study_with_another_analysis_to_come_is_left_as_it_is(engine: Engine,
                                                                           tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with session_factory(engine).begin() as session:
        study_id = _study_with_a_lost_file(session, tmp_path)
        first = enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=1).id
        analysis_failed(session, first, JobStatus.QUEUED, "a retry comes", now)
        assert session.get_one(Study, study_id).status == StudyStatus.COMPLETE
        session.get_one(Job, first).status = JobStatus.FAILED
        second = enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=1).id
        analysis_failed(session, first, JobStatus.FAILED, "an older job", now)
        assert session.get_one(Study, study_id).status == StudyStatus.COMPLETE
        session.get_one(Job, second).status = JobStatus.SUCCEEDED
        session.get_one(Study, study_id).status = StudyStatus.ANALYSED
        analysis_failed(session, first, JobStatus.FAILED, "the study is answered", now)
        assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED
        assert session.scalars(select(StudyEvent)).all() == []
