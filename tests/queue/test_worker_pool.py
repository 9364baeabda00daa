"""WorkerPool threads on a real database: run, retry, heartbeat, stop and release."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from node.db.engine import session_factory
from node.db.models import Job, JobStatus, utcnow
from node.queue import worker
from node.queue.jobs import ClaimedJob, JobCancelled, PermanentJobError, claim, enqueue
from node.queue.worker import JobContext, WorkerPool
from node.settings import QueueSettings
from tests.queue.helpers import events_of, wait_until

FAST = QueueSettings(
    workers=3, lease=timedelta(seconds=30), heartbeat=timedelta(seconds=10),
    poll_interval=timedelta(seconds=0.02), max_attempts=3, backoff_base=timedelta(seconds=0.01),
    backoff_max=timedelta(seconds=0.05), backoff_jitter=0.5,
)


def _status(engine: Engine, job_id: int) -> str:
    with session_factory(engine)() as session:
        return session.get_one(Job, job_id).status


def _enqueue(engine: Engine, kind: str, count: int = 1, max_attempts: int = 3) -> list[int]:
    with session_factory(engine).begin() as session:
        return [enqueue(session, kind, None, {"n": n}, max_attempts=max_attempts).id for n in range(count)]


def test_pool_runs_every_job_once(engine: Engine) -> None:
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def record(job: ClaimedJob, context: JobContext) -> None:
        with lock:
            runs[job.id] += 1

    ids = _enqueue(engine, "record", 20)
    pool = WorkerPool(FAST, session_factory(engine), {"record": record}, "test")
    pool.start()
    try:
        wait_until(lambda: all(_status(engine, i) == JobStatus.SUCCEEDED for i in ids), "all jobs to succeed")
    finally:
        assert pool.stop(5) == []
    assert runs == Counter(dict.fromkeys(ids, 1))


def test_failing_handler_is_retried_then_failed_with_its_error(engine: Engine) -> None:
    def broken(job: ClaimedJob, context: JobContext) -> None:
        raise RuntimeError(f"attempt {job.attempt} broke")

    [job_id] = _enqueue(engine, "broken", max_attempts=3)
    pool = WorkerPool(FAST, session_factory(engine), {"broken": broken}, "test", rng=random.Random(1))
    pool.start()
    try:
        wait_until(lambda: _status(engine, job_id) == JobStatus.FAILED, "the job to fail")
    finally:
        pool.stop(5)
    with session_factory(engine)() as session:
        job = session.get_one(Job, job_id)
    assert (job.attempts, job.last_error) == (3, "RuntimeError: attempt 3 broke")
    assert events_of(session_factory(engine), job_id) == [
        "queued", "claimed", "retry_scheduled", "claimed", "retry_scheduled", "claimed", "failed"]


def test_a_failed_job_keeps_and_logs_no_value_its_handler_named_private(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # a library's message quoting a patient's value went into jobs.last_error and the log
    def quoting(job: ClaimedJob, context: JobContext) -> None:
        context.keep_private({"SMITH^JOHN", "SMITH", "JOHN", "19630102"})
        raise ValueError("cannot write 'Smith^John', born 19630102")

    [job_id] = _enqueue(engine, "quoting", max_attempts=1)
    pool = WorkerPool(FAST, session_factory(engine), {"quoting": quoting}, "test")
    pool.start()
    try:
        wait_until(lambda: _status(engine, job_id) == JobStatus.FAILED, "the job to fail")
    finally:
        pool.stop(5)
    kept = "ValueError: cannot write '[redacted]', born [redacted]"
    with session_factory(engine)() as session:
        assert session.get_one(Job, job_id).last_error == kept
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "node.queue.worker")
    assert kept in logged  # with its traceback
    assert "in quoting" in logged
    assert "smith" not in logged.lower() and "19630102" not in logged


def test_permanent_error_fails_at_once(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    def hopeless(job: ClaimedJob, context: JobContext) -> None:
        raise PermanentJobError("study gone")

    [job_id] = _enqueue(engine, "hopeless", max_attempts=3)
    pool = WorkerPool(FAST, session_factory(engine), {"hopeless": hopeless}, "test")
    pool.start()
    try:
        wait_until(lambda: _status(engine, job_id) == JobStatus.FAILED, "the job to fail")
    finally:
        pool.stop(5)
    assert events_of(session_factory(engine), job_id) == ["queued", "claimed", "failed"]
    # a handler's verdict, not a bug: one line, no traceback (a dead letter printed one at ERROR)
    errors = [r for r in caplog.records if r.name == "node.queue.worker" and r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors if "study gone" in r.getMessage()] == [
        f"job {job_id} (hopeless) for study None cannot succeed: study gone"]
    assert all(r.exc_info is None for r in errors)


def test_a_job_whose_worker_died_on_its_final_attempt_fails_while_the_queue_is_busy(
        engine: Engine) -> None:
    sessions = session_factory(engine)
    [orphan] = _enqueue(engine, "orphan", max_attempts=1)
    with sessions.begin() as session:  # claimed by a worker that then died: its lease runs out
        claimed = claim(session, "gone", ["orphan"], timedelta(seconds=30))
        assert claimed is not None and claimed.id == orphan
        session.get_one(Job, orphan).lease_expires_at = utcnow() - timedelta(seconds=1)
    failed: list[int] = []

    def busy(job: ClaimedJob, context: JobContext) -> None:
        with context.sessions.begin() as session:  # there is always a next job to claim
            enqueue(session, "busy", None, {}, max_attempts=1)

    _enqueue(engine, "busy")
    pool = WorkerPool(FAST.model_copy(update={"workers": 1}), sessions, {"busy": busy}, "test",
                      on_failure={"orphan": lambda session, job_id, *_: failed.append(job_id)})
    pool.start()
    try:
        wait_until(lambda: _status(engine, orphan) == JobStatus.FAILED, "the orphaned job to fail")
    finally:
        pool.stop(5)
    assert failed == [orphan]


def test_a_database_error_failing_expired_leases_loses_no_job(engine: Engine,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Reaped right after a successful claim, an error there dropped the job just claimed: it
    # stayed running with its attempt used, never run.
    calls: list[int] = []

    def locked_once(session: Session, *, now: datetime | None = None) -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE jobs", {}, Exception("database is locked"))
        return []

    monkeypatch.setattr(worker, "fail_exhausted_leases", locked_once)
    [job_id] = _enqueue(engine, "work", max_attempts=1)
    ran: list[int] = []
    pool = WorkerPool(FAST.model_copy(update={"workers": 1}), session_factory(engine),
                      {"work": lambda job, context: ran.append(job.id)}, "test")
    pool.start()
    try:
        wait_until(lambda: _status(engine, job_id) == JobStatus.SUCCEEDED, "the job to run")
    finally:
        pool.stop(5)
    assert ran == [job_id] and calls


def test_heartbeats_keep_a_long_job_from_being_reclaimed(engine: Engine) -> None:
    settings = FAST.model_copy(update={"workers": 1, "lease": timedelta(seconds=0.5),
                                       "heartbeat": timedelta(seconds=0.05)})
    sessions = session_factory(engine)
    release_job = threading.Event()
    [job_id] = _enqueue(engine, "long")
    def long(job: ClaimedJob, context: JobContext) -> None:
        release_job.wait(60)

    pool = WorkerPool(settings, sessions, {"long": long}, "test")
    pool.start()
    try:
        wait_until(lambda: _status(engine, job_id) == JobStatus.RUNNING, "the job to start")
        with sessions() as session:
            first_expiry = session.get_one(Job, job_id).lease_expires_at
        assert first_expiry is not None

        def renewed_past_first_expiry() -> bool:
            with sessions() as session:
                expiry = session.get_one(Job, job_id).lease_expires_at
            return utcnow() > first_expiry and expiry is not None and expiry > utcnow()

        wait_until(renewed_past_first_expiry, "a heartbeat to carry the lease past its first expiry")
        with sessions.begin() as session:
            assert claim(session, "intruder", ["long"], settings.lease) is None
        release_job.set()
        wait_until(lambda: _status(engine, job_id) == JobStatus.SUCCEEDED, "the job to succeed")
    finally:
        release_job.set()
        pool.stop(5)
    assert events_of(sessions, job_id) == ["queued", "claimed", "succeeded"]


def test_stop_releases_a_job_that_does_not_finish_in_time(engine: Engine) -> None:
    started = threading.Event()
    finish = threading.Event()

    def stubborn(job: ClaimedJob, context: JobContext) -> None:
        started.set()
        finish.wait(60)

    [job_id] = _enqueue(engine, "stubborn", max_attempts=1)
    pool = WorkerPool(FAST.model_copy(update={"workers": 1}), session_factory(engine),
                      {"stubborn": stubborn}, "test")
    pool.start()
    try:
        assert started.wait(60)
        assert pool.stop(0.05) == [job_id]
    finally:
        finish.set()
    with session_factory(engine)() as session:
        job = session.get_one(Job, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    assert events_of(session_factory(engine), job_id) == ["queued", "claimed", "released"]


def test_cooperative_handler_is_released_when_cancelled(engine: Engine) -> None:
    started = threading.Event()

    def polite(job: ClaimedJob, context: JobContext) -> None:
        started.set()
        context.cancelled.wait(60)
        raise JobCancelled("stopping")

    [job_id] = _enqueue(engine, "polite")
    one = FAST.model_copy(update={"workers": 1})
    pool = WorkerPool(one, session_factory(engine), {"polite": polite}, "t")
    pool.start()
    assert started.wait(60)
    released = pool.stop(0.05)
    wait_until(lambda: len(events_of(session_factory(engine), job_id)) == 3, "the release")
    assert released == [job_id]
    assert _status(engine, job_id) == JobStatus.QUEUED


def test_stop_lets_running_jobs_finish_within_the_timeout(engine: Engine) -> None:
    started = threading.Event()
    finish = threading.Event()

    def quick(job: ClaimedJob, context: JobContext) -> None:
        started.set()
        finish.wait(60)

    [job_id] = _enqueue(engine, "quick")
    pool = WorkerPool(FAST.model_copy(update={"workers": 1}), session_factory(engine), {"quick": quick}, "t")
    pool.start()
    assert started.wait(60)
    stopper = threading.Timer(0.05, finish.set)
    stopper.start()
    assert pool.stop(60) == []
    assert _status(engine, job_id) == JobStatus.SUCCEEDED
    with session_factory(engine)() as session:
        assert session.scalars(select(Job.attempts)).one() == 1
