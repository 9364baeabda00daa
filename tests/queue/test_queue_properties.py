"""Random interleavings of queue operations keep the job table and its event log consistent."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, select

from node.db.engine import session_factory
from node.db.models import Job, JobEvent, JobStatus
from node.queue.jobs import (
    ClaimedJob,
    claim,
    complete,
    enqueue,
    fail,
    fail_exhausted_leases,
    heartbeat,
    release,
)
from node.queue.policy import RetryPolicy

LEASE = timedelta(seconds=30)
POLICY = RetryPolicy(base=timedelta(seconds=5), max=timedelta(seconds=40), jitter=0.5, max_attempts=3)
WORKERS = ("w1", "w2", "w3")
LAST_EVENT = {
    JobStatus.QUEUED: {"queued", "retry_scheduled", "released"},
    JobStatus.RUNNING: {"claimed"},
    JobStatus.SUCCEEDED: {"succeeded"},
    JobStatus.FAILED: {"failed"},
}


def _machine(engine: Engine) -> type[RuleBasedStateMachine]:
    sessions = session_factory(engine)

    class QueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.now = datetime(2026, 1, 1, tzinfo=UTC)
            # Examples share the database; a kind of its own keeps each example's jobs apart.
            self.kind = f"p{uuid.uuid4().hex[:16]}"
            self.held: dict[str, ClaimedJob] = {}
            self.jobs: list[int] = []
            self.rng = random.Random(0)

        @rule(max_attempts=st.integers(min_value=1, max_value=3))
        def add(self, max_attempts: int) -> None:
            with sessions.begin() as session:
                job = enqueue(session, self.kind, None, {}, max_attempts=max_attempts, now=self.now)
                self.jobs.append(job.id)

        @rule(worker=st.sampled_from(WORKERS))
        def take(self, worker: str) -> None:
            if worker in self.held:
                return
            with sessions.begin() as session:
                job = claim(session, worker, [self.kind], LEASE, now=self.now)
            if job is not None:
                assert job.id in self.jobs
                self.held[worker] = job

        @rule(worker=st.sampled_from(WORKERS),
              outcome=st.sampled_from(["complete", "fail", "give up", "release"]))
        def finish(self, worker: str, outcome: str) -> None:
            job = self.held.pop(worker, None)
            if job is None:
                return
            with sessions.begin() as session:
                owner = session.get_one(Job, job.id).lease_owner
                status = session.get_one(Job, job.id).status
                if outcome == "complete":
                    done = complete(session, job, now=self.now)
                elif outcome == "release":
                    done = release(session, job, now=self.now)
                else:
                    retry = outcome == "fail"
                    done = fail(session, job, "x", POLICY, self.rng, retry=retry, now=self.now) is not None
            # Only the current lease owner can finish a job.
            assert done == (owner == worker and status == JobStatus.RUNNING)

        @rule(worker=st.sampled_from(WORKERS))
        def beat(self, worker: str) -> None:
            job = self.held.get(worker)
            if job is not None:
                with sessions.begin() as session:
                    heartbeat(session, job.id, worker, LEASE, now=self.now)

        @rule(seconds=st.integers(min_value=0, max_value=90))
        def wait(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        @rule()
        def reap(self) -> None:
            with sessions.begin() as session:
                fail_exhausted_leases(session, now=self.now)

        @invariant()
        def consistent(self) -> None:
            if not self.jobs:
                return
            with sessions() as session:
                for job in session.scalars(select(Job).where(Job.id.in_(self.jobs))):
                    events = list(session.scalars(
                        select(JobEvent.event).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))
                    assert events[0] == "queued"
                    assert events[-1] in LAST_EVENT[JobStatus(job.status)], (job.status, events)
                    assert events.count("claimed") == job.attempts + events.count("released")
                    assert 0 <= job.attempts <= job.max_attempts
                    if job.status == JobStatus.RUNNING:
                        assert job.lease_owner is not None and job.lease_expires_at is not None
                    if job.status in (JobStatus.QUEUED, JobStatus.SUCCEEDED):
                        assert job.lease_owner is None and job.lease_expires_at is None
                    if job.status == JobStatus.QUEUED:
                        assert job.attempts < job.max_attempts
                    if job.status == JobStatus.FAILED:
                        assert job.last_error

    return QueueMachine


def test_queue_operations_keep_jobs_and_events_consistent(engine: Engine) -> None:
    run_state_machine_as_test(
        _machine(engine),
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
