"""The queue's functions on a real database: claims, leases, retries and their events."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from node.db.engine import session_factory
from node.db.models import Job, JobStatus
from node.queue.jobs import (
    claim,
    complete,
    enqueue,
    fail,
    fail_exhausted_leases,
    heartbeat,
    release,
)
from node.queue.policy import RetryPolicy
from tests.queue.helpers import add_study, events_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
POLICY = RetryPolicy(base=timedelta(seconds=10), max=timedelta(seconds=25), jitter=0.0, max_attempts=3)


def _job(
    engine: Engine, *, max_attempts: int = 3, kind: str = "test", run_after: datetime | None = None
) -> int:
    with session_factory(engine).begin() as session:
        study_id = add_study(session, f"1.2.826.0.1.{random.randrange(10**9)}", T0)
        return enqueue(session, kind, study_id, {"n": 1}, max_attempts=max_attempts, run_after=run_after,
                       now=T0).id


def test_claim_then_complete(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine)
    with sessions.begin() as session:
        job = claim(session, "w1", ["test"], LEASE, now=T0)
    assert job is not None
    assert (job.id, job.kind, job.attempt, job.payload) == (job_id, "test", 1, {"n": 1})
    assert job.study_uid is not None and job.study_uid.startswith("1.2.826.0.1.")
    assert job.lease_expires_at == T0 + LEASE
    with sessions.begin() as session:
        assert claim(session, "w2", ["test"], LEASE, now=T0) is None
        assert complete(session, job, now=T0)
    with sessions() as session:
        row = session.get_one(Job, job_id)
        assert (row.status, row.lease_owner, row.finished_at) == (JobStatus.SUCCEEDED, None, T0)
    assert events_of(sessions, job_id) == ["queued", "claimed", "succeeded"]


def test_claim_respects_kinds_run_after_and_order(engine: Engine) -> None:
    sessions = session_factory(engine)
    later = _job(engine, run_after=T0 + timedelta(minutes=5))
    other_kind = _job(engine, kind="other")
    first = _job(engine)
    with sessions.begin() as session:
        got = claim(session, "w1", ["test"], LEASE, now=T0)
        assert got is not None and got.id == first
        assert claim(session, "w1", ["test"], LEASE, now=T0) is None
        assert complete(session, got, now=T0)
        due = claim(session, "w1", ["test"], LEASE, now=T0 + timedelta(minutes=5))
        assert due is not None and due.id == later
        assert claim(session, "w1", ["test", "other"], LEASE, now=T0).id == other_kind  # type: ignore[union-attr]


def test_claim_rejects_bad_arguments(engine: Engine) -> None:
    with session_factory(engine).begin() as session:
        with pytest.raises(ValueError, match="kinds"):
            claim(session, "w1", [], LEASE)
        with pytest.raises(ValueError, match="lease"):
            claim(session, "w1", ["test"], timedelta(0))
        with pytest.raises(ValueError, match="worker_id"):
            claim(session, "", ["test"], LEASE)
        with pytest.raises(ValueError, match="max_attempts"):
            enqueue(session, "test", None, {}, max_attempts=0)


def test_two_threads_never_claim_the_same_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        ids = {enqueue(session, "test", None, {}, max_attempts=1).id for _ in range(40)}
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def drain(worker: str) -> None:
        barrier.wait()
        while True:
            with sessions.begin() as session:
                job = claim(session, worker, ["test"], LEASE)
            if job is None:
                return
            claimed[worker].append(job.id)

    threads = [threading.Thread(target=drain, args=(w,)) for w in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == sorted(ids)


def test_expired_lease_is_reclaimed_with_an_event(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine)
    with sessions.begin() as session:
        first = claim(session, "w1", ["test"], LEASE, now=T0)
    assert first is not None
    with sessions.begin() as session:
        assert claim(session, "w2", ["test"], LEASE, now=T0 + LEASE) is None  # not expired yet
        second = claim(session, "w2", ["test"], LEASE, now=T0 + LEASE + timedelta(seconds=1))
    assert second is not None and second.id == job_id and second.attempt == 2
    with sessions.begin() as session:
        # The first worker has lost the job: it can neither renew nor finish it.
        assert not heartbeat(session, job_id, "w1", LEASE, now=T0 + LEASE)
        assert not complete(session, first)
        assert fail(session, first, "late", POLICY, random.Random(0)) is None
        assert complete(session, second)
    assert events_of(sessions, job_id) == ["queued", "claimed", "lease_expired", "claimed", "succeeded"]


def test_heartbeat_keeps_the_lease(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine)
    with sessions.begin() as session:
        job = claim(session, "w1", ["test"], LEASE, now=T0)
    assert job is not None
    beat = T0 + LEASE - timedelta(seconds=5)
    with sessions.begin() as session:
        assert heartbeat(session, job_id, "w1", LEASE, now=beat)
        assert not heartbeat(session, job_id, "w2", LEASE, now=beat)
    with sessions.begin() as session:
        assert claim(session, "w2", ["test"], LEASE, now=T0 + LEASE + timedelta(seconds=1)) is None
        assert claim(session, "w2", ["test"], LEASE, now=beat + LEASE + timedelta(seconds=1)) is not None


def test_retries_back_off_then_fail_with_the_error(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine, max_attempts=3)
    now = T0
    waits = []
    for attempt in (1, 2, 3):
        with sessions.begin() as session:
            assert claim(session, "w1", ["test"], LEASE, now=now - timedelta(microseconds=1)) is None
            job = claim(session, "w1", ["test"], LEASE, now=now)
            assert job is not None and job.attempt == attempt
            status = fail(session, job, f"boom {attempt}", POLICY, random.Random(0), now=now)
        with sessions() as session:
            row = session.get_one(Job, job_id)
        assert row.last_error == f"boom {attempt}"
        if attempt < 3:
            assert status == JobStatus.QUEUED
            waits.append(row.run_after - now)
            now = row.run_after
        else:
            assert status == JobStatus.FAILED
            assert (row.status, row.finished_at, row.lease_owner) == (JobStatus.FAILED, now, None)
    assert waits == [timedelta(seconds=10), timedelta(seconds=20)]
    assert events_of(sessions, job_id) == [
        "queued", "claimed", "retry_scheduled", "claimed", "retry_scheduled", "claimed", "failed",
    ]
    with sessions.begin() as session:
        assert claim(session, "w1", ["test"], LEASE, now=now + timedelta(days=1)) is None


def test_permanent_failure_skips_retries(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine, max_attempts=5)
    with sessions.begin() as session:
        job = claim(session, "w1", ["test"], LEASE, now=T0)
        assert job is not None
        assert fail(session, job, "no such study", POLICY, random.Random(0), retry=False, now=T0) == "failed"
    assert events_of(sessions, job_id) == ["queued", "claimed", "failed"]


def test_release_does_not_count_the_attempt(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine, max_attempts=1)
    with sessions.begin() as session:
        job = claim(session, "w1", ["test"], LEASE, now=T0)
        assert job is not None
        assert release(session, job, now=T0)
        again = claim(session, "w2", ["test"], LEASE, now=T0)
    assert again is not None and again.attempt == 1
    assert events_of(sessions, job_id) == ["queued", "claimed", "released", "claimed"]


def test_lease_expired_on_the_last_attempt_fails_the_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine, max_attempts=1)
    with sessions.begin() as session:
        assert claim(session, "w1", ["test"], LEASE, now=T0) is not None
    expired = T0 + LEASE + timedelta(seconds=1)
    with sessions.begin() as session:
        assert claim(session, "w2", ["test"], LEASE, now=expired) is None
        assert fail_exhausted_leases(session, now=T0) == []
        assert fail_exhausted_leases(session, now=expired) == [job_id]
    with sessions() as session:
        row = session.get_one(Job, job_id)
        assert row.status == JobStatus.FAILED and row.last_error and "lease expired" in row.last_error
    assert events_of(sessions, job_id) == ["queued", "claimed", "lease_expired", "failed"]


def test_every_job_change_is_an_event(engine: Engine) -> None:
    sessions = session_factory(engine)
    job_id = _job(engine)
    with sessions() as session:
        statuses = list(session.scalars(select(Job.status).where(Job.id == job_id)))
    assert statuses == [JobStatus.QUEUED]
    assert events_of(sessions, job_id) == ["queued"]
