"""The completion monitor: one analysis per quiet study, again after a late instance."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from node.db.engine import session_factory
from node.db.models import Association, AssociationStudy, Job, JobStatus, Study, StudyStatus
from node.queue.completion import ANALYZE_STUDY, CompletionMonitor
from node.queue.jobs import claim, complete
from node.settings import QueueSettings, StudySettings
from tests.queue.helpers import add_study, events_of, wait_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUIET = timedelta(seconds=20)


def _monitor(engine: Engine) -> CompletionMonitor:
    return CompletionMonitor(StudySettings(quiet_period=QUIET), QueueSettings(max_attempts=4),
                             session_factory(engine))


def _analysis_jobs(session: Session, study_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.kind == ANALYZE_STUDY, Job.study_id == study_id)))


def test_quiet_study_gets_exactly_one_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    monitor = _monitor(engine)
    with sessions.begin() as session:
        study_id = add_study(session, "1.2.3.1", T0)
        busy_id = add_study(session, "1.2.3.2", T0 + timedelta(seconds=5))
    with sessions.begin() as session:
        assert monitor.scan_once(session, T0 + QUIET - timedelta(seconds=1)) == []
    with sessions.begin() as session:
        jobs = monitor.scan_once(session, T0 + QUIET)
    with sessions.begin() as session:
        later = monitor.scan_once(session, T0 + QUIET * 10)  # only the other study now
        assert monitor.scan_once(session, T0 + QUIET * 20) == []
    with sessions() as session:
        [job] = _analysis_jobs(session, study_id)
        assert jobs == [job.id]
        assert (job.status, job.max_attempts, job.payload) == (
            JobStatus.QUEUED, 4, {"study_instance_uid": "1.2.3.1"})
        study = session.get_one(Study, study_id)
        assert (study.status, study.completed_at) == (StudyStatus.COMPLETE, T0 + QUIET)
        assert [j.id for j in _analysis_jobs(session, busy_id)] == later
    assert events_of(sessions, job.id) == ["queued"]


def test_late_instance_queues_a_reanalysis_after_the_next_quiet_period(engine: Engine) -> None:
    sessions = session_factory(engine)
    monitor = _monitor(engine)
    with sessions.begin() as session:
        study_id = add_study(session, "1.2.3.3", T0)
    with sessions.begin() as session:
        [first] = monitor.scan_once(session, T0 + QUIET)
        job = claim(session, "w", [ANALYZE_STUDY], timedelta(minutes=5), now=T0 + QUIET)
        assert job is not None and complete(session, job)
        session.execute(update(Study).values(status=StudyStatus.ANALYSED))
    late = T0 + timedelta(minutes=3)
    with sessions.begin() as session:  # what storage does when an instance arrives late
        session.execute(update(Study).values(status=StudyStatus.RECEIVING, last_received_at=late))
    with sessions.begin() as session:
        assert monitor.scan_once(session, late + QUIET / 2) == []
    with sessions.begin() as session:
        [second] = monitor.scan_once(session, late + QUIET)
    assert second != first
    with sessions() as session:
        statuses = [j.status for j in _analysis_jobs(session, study_id)]
    assert statuses == [JobStatus.SUCCEEDED, JobStatus.QUEUED]


def test_late_instance_before_the_analysis_started_reuses_the_queued_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    monitor = _monitor(engine)
    with sessions.begin() as session:
        study_id = add_study(session, "1.2.3.4", T0)
    with sessions.begin() as session:
        [first] = monitor.scan_once(session, T0 + QUIET)
        # three failed attempts of four; the last waits out a long backoff
        session.execute(update(Job).where(Job.id == first)
                        .values(attempts=3, run_after=T0 + timedelta(hours=1)))
    late = T0 + timedelta(minutes=1)
    with sessions.begin() as session:
        session.execute(update(Study).values(status=StudyStatus.RECEIVING, last_received_at=late))
    with sessions.begin() as session:
        assert monitor.scan_once(session, late + QUIET) == [first]
    with sessions() as session:
        [job] = _analysis_jobs(session, study_id)
        assert session.get_one(Study, study_id).status == StudyStatus.COMPLETE
        # the new content starts it afresh: due now, with all four attempts
        assert (job.attempts, job.run_after) == (0, late + QUIET)


def _wait_for_blocked_peer(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        # SQLite: the peer waits for BEGIN IMMEDIATE; give it a moment to get there.
        threading.Event().wait(0.2)
        return
    def peer_waits_on_a_lock() -> bool:
        # A fresh transaction each time: pg_stat_activity is a snapshot per transaction.
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar())

    wait_until(peer_waits_on_a_lock, "the second monitor to wait on the row lock")


def test_two_monitors_at_once_queue_one_job_per_study(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        studies = [add_study(session, f"1.2.3.9.{n}", T0) for n in range(5)]
    first, second = _monitor(engine), _monitor(engine)
    now = T0 + QUIET
    second_result: list[int] = []
    with sessions.begin() as session:
        won = first.scan_once(session, now)
        peer = threading.Thread(target=lambda: second_result.extend(_scan(second, engine, now)))
        peer.start()
        _wait_for_blocked_peer(engine)
    peer.join()
    assert len(won) == 5
    assert second_result == []
    with sessions() as session:
        assert all(len(_analysis_jobs(session, s)) == 1 for s in studies)


def _scan(monitor: CompletionMonitor, engine: Engine, now: datetime) -> list[int]:
    with session_factory(engine).begin() as session:
        return monitor.scan_once(session, now)


def test_monitor_thread_queues_the_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        study_id = add_study(session, "1.2.3.5", datetime.now(UTC) - QUIET)
    settings = StudySettings(quiet_period=QUIET, completion_poll_interval=timedelta(seconds=0.05))
    monitor = CompletionMonitor(settings, QueueSettings(), sessions)
    monitor.start()
    try:
        def queued() -> bool:
            with sessions() as session:
                return len(_analysis_jobs(session, study_id)) == 1
        wait_until(queued, "the monitor thread to queue the analysis")
    finally:
        monitor.stop()


def test_an_open_association_holds_a_study_for_at_most_the_hold(engine: Engine) -> None:
    sessions = session_factory(engine)
    hold = timedelta(hours=1)
    monitor = CompletionMonitor(StudySettings(quiet_period=QUIET, association_hold=hold), QueueSettings(),
                                sessions)
    with sessions.begin() as session:
        study_id = add_study(session, "1.2.3.6", T0)
        # left open by a node on another host that never came back
        row = Association(calling_ae="PACS", called_ae="LSENTINEL", peer_address="10.0.0.9",
                          peer_port=104, started_at=T0, node_id="gone:1:abcdef",
                          node_listener="gone/LSENTINEL@0.0.0.0:11112")
        session.add(row)
        session.flush()
        session.add(AssociationStudy(association_id=row.id, study_id=study_id, first_stored_at=T0,
                                     last_stored_at=T0))
    with sessions.begin() as session:
        assert monitor.scan_once(session, T0 + QUIET) == []
        assert monitor.scan_once(session, T0 + hold - timedelta(seconds=1)) == []
    with sessions.begin() as session:
        [job] = monitor.scan_once(session, T0 + hold)
    with sessions() as session:
        assert [j.id for j in _analysis_jobs(session, study_id)] == [job]
