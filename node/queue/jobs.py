"""The job queue in the database: enqueue, claim with a lease, and finish.

Every function works inside the caller's session and transaction and never
commits, so a job can be queued atomically with the change that caused it.
Each state change writes a :class:`JobEvent` in that same transaction.

Claiming is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING``: on PostgreSQL concurrent claimers skip each other's rows; on
SQLite every transaction is ``BEGIN IMMEDIATE`` so claims are serialised.
Delivery is at least once: a worker that dies keeps its lease until it
expires, then the job runs again, so handlers must be idempotent.

Times come from the caller's clock (``now``, default the system clock), so
hosts sharing one PostgreSQL need synchronised clocks (NTP); leases should
be much longer than any plausible skew.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from node.db.models import Job, JobEvent, JobStatus, Study, utcnow
from node.queue.policy import RetryPolicy

MAX_ERROR_CHARS = 4000
_KIND_MAX = 32
_OWNER_MAX = 128


class JobError(Exception):
    """Root of the queue's errors; handlers raise subclasses to steer the queue."""


class PermanentJobError(JobError):
    """Raised by a handler when retrying cannot help: the job fails at once."""


class JobCancelled(JobError):
    """Raised by a handler that saw ``context.cancelled``: the job is given back unfinished."""


class RetryAfter(JobError):
    """Raised by a handler that schedules its own next run ``delay`` from now.

    For handlers with their own backoff policy or waiting on something else
    (a destination's open circuit breaker). ``count_attempt=False`` gives the
    attempt back, so waiting does not use up the job's attempts.
    """

    def __init__(self, message: str, delay: timedelta, *, count_attempt: bool = True) -> None:
        if delay < timedelta(0):
            raise ValueError(f"delay must not be negative, got {delay}")
        super().__init__(message)
        self.delay = delay
        self.count_attempt = count_attempt


class EventKind(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEFERRED = "deferred"
    FAILED = "failed"
    LEASE_EXPIRED = "lease_expired"
    RELEASED = "released"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds the lease of; ``attempt`` counts this run."""

    id: int
    kind: str
    study_id: int | None
    study_uid: str | None
    payload: Mapping[str, Any]
    attempt: int
    max_attempts: int
    worker_id: str
    lease_expires_at: datetime


def _event(session: Session, job_id: int, event: EventKind, worker: str | None, detail: str | None,
           now: datetime) -> None:
    session.add(JobEvent(job_id=job_id, at=now, event=event.value, worker=worker, detail=detail))


def _positive(name: str, value: timedelta) -> None:
    if value <= timedelta(0):
        raise ValueError(f"{name} must be positive, got {value}")


def _worker(worker_id: str) -> None:
    if not worker_id or len(worker_id) > _OWNER_MAX:
        raise ValueError(f"worker_id must be 1-{_OWNER_MAX} characters, got {worker_id!r}")


def enqueue(
    session: Session,
    kind: str,
    study_id: int | None,
    payload: Mapping[str, Any],
    *,
    max_attempts: int,
    run_after: datetime | None = None,
    now: datetime | None = None,
) -> Job:
    """Add a queued job (flushed, so it has an id) and its ``queued`` event."""
    if not kind or len(kind) > _KIND_MAX:
        raise ValueError(f"kind must be 1-{_KIND_MAX} characters, got {kind!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if run_after is not None and run_after.tzinfo is None:
        raise ValueError("run_after must be timezone-aware")
    now = now or utcnow()
    job = Job(
        kind=kind,
        study_id=study_id,
        payload=dict(payload),
        status=JobStatus.QUEUED,
        attempts=0,
        max_attempts=max_attempts,
        run_after=run_after or now,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    _event(session, job.id, EventKind.QUEUED, None, None, now)
    return job


def claim(
    session: Session,
    worker_id: str,
    kinds: Collection[str],
    lease: timedelta,
    *,
    now: datetime | None = None,
) -> ClaimedJob | None:
    """Take the next due job of one of ``kinds`` for ``lease``, or None.

    Due means queued with ``run_after`` passed, or running with an expired
    lease and attempts left (its worker died); the latter records
    ``lease_expired`` before ``claimed``.
    """
    _worker(worker_id)
    if not kinds:
        raise ValueError("kinds must name at least one job kind")
    _positive("lease", lease)
    now = now or utcnow()
    claimable = or_(
        and_(Job.status == JobStatus.QUEUED, Job.run_after <= now),
        and_(
            Job.status == JobStatus.RUNNING,
            Job.lease_expires_at < now,
            Job.attempts < Job.max_attempts,
        ),
    )
    picked = (
        select(Job.id)
        .where(Job.kind.in_(list(kinds)), claimable)
        .order_by(Job.run_after, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        update(Job)
        .where(Job.id == picked)
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            lease_owner=worker_id,
            lease_expires_at=now + lease,
            updated_at=now,
        )
        .returning(
            Job.id, Job.kind, Job.study_id, Job.payload, Job.attempts, Job.max_attempts,
            Job.lease_expires_at,
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        return None
    study_id = row[2]
    study_uid = (
        None if study_id is None
        else session.scalar(select(Study.study_instance_uid).where(Study.id == study_id))
    )
    job = ClaimedJob(
        id=row[0], kind=row[1], study_id=study_id, study_uid=study_uid, payload=dict(row[3] or {}),
        attempt=row[4], max_attempts=row[5], worker_id=worker_id, lease_expires_at=row[6],
    )
    # The row is locked by our UPDATE, so the event log cannot change under us:
    # a job whose last event is "claimed" was still running, its lease expired.
    previous = session.execute(
        select(JobEvent.event, JobEvent.worker)
        .where(JobEvent.job_id == job.id)
        .order_by(JobEvent.id.desc())
        .limit(1)
    ).one_or_none()
    if previous is not None and previous[0] == EventKind.CLAIMED:
        _event(session, job.id, EventKind.LEASE_EXPIRED, previous[1],
               f"lease of {previous[1]} expired; reclaimed by {worker_id}", now)
    _event(session, job.id, EventKind.CLAIMED, worker_id, f"attempt {job.attempt}/{job.max_attempts}", now)
    return job


def heartbeat(
    session: Session, job_id: int, worker_id: str, lease: timedelta, *, now: datetime | None = None
) -> bool:
    """Extend the lease; False means this worker no longer owns the job."""
    _worker(worker_id)
    _positive("lease", lease)
    now = now or utcnow()
    renewed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_owner == worker_id)
        .values(lease_expires_at=now + lease, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return renewed is not None


def _finish(session: Session, job: ClaimedJob, values: dict[str, Any]) -> bool:
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.RUNNING, Job.lease_owner == job.worker_id)
        .values(**values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return done is not None


def complete(session: Session, job: ClaimedJob, *, now: datetime | None = None) -> bool:
    """Mark the job succeeded; False if the lease was lost (someone else runs it)."""
    now = now or utcnow()
    if not _finish(session, job, {
        "status": JobStatus.SUCCEEDED, "lease_owner": None, "lease_expires_at": None,
        "updated_at": now, "finished_at": now,
    }):
        return False
    _event(session, job.id, EventKind.SUCCEEDED, job.worker_id, None, now)
    return True


def fail(
    session: Session,
    job: ClaimedJob,
    error: str,
    policy: RetryPolicy,
    rng: random.Random,
    *,
    retry: bool = True,
    now: datetime | None = None,
) -> JobStatus | None:
    """Record a failed attempt: queue a retry after backoff, or fail for good.

    Returns the job's new status, or None if the lease was lost.
    """
    now = now or utcnow()
    error = (error or "unknown error")[:MAX_ERROR_CHARS]
    if retry and job.attempt < job.max_attempts:
        delay = policy.delay(job.attempt, rng)
        if not _finish(session, job, {
            "status": JobStatus.QUEUED, "lease_owner": None, "lease_expires_at": None,
            "run_after": now + delay, "last_error": error, "updated_at": now,
        }):
            return None
        _event(session, job.id, EventKind.RETRY_SCHEDULED, job.worker_id,
               f"attempt {job.attempt}/{job.max_attempts} failed, retry in {delay.total_seconds():.1f} s: "
               f"{error}"[:MAX_ERROR_CHARS], now)
        return JobStatus.QUEUED
    if not _finish(session, job, {
        "status": JobStatus.FAILED, "lease_owner": None, "lease_expires_at": None,
        "last_error": error, "updated_at": now, "finished_at": now,
    }):
        return None
    _event(session, job.id, EventKind.FAILED, job.worker_id, error, now)
    return JobStatus.FAILED


def defer(
    session: Session,
    job: ClaimedJob,
    delay: timedelta,
    reason: str,
    *,
    count_attempt: bool,
    now: datetime | None = None,
) -> bool:
    """Queue the job again ``delay`` from now (a handler's :class:`RetryAfter`).

    False if the lease was lost. The handler decides when to give up, so a
    counted attempt must leave attempts (else the job is failed here).
    """
    if delay < timedelta(0):
        raise ValueError(f"delay must not be negative, got {delay}")
    now = now or utcnow()
    reason = (reason or "deferred")[:MAX_ERROR_CHARS]
    if count_attempt and job.attempt >= job.max_attempts:
        if not _finish(session, job, {
            "status": JobStatus.FAILED, "lease_owner": None, "lease_expires_at": None,
            "last_error": reason, "updated_at": now, "finished_at": now,
        }):
            return False
        _event(session, job.id, EventKind.FAILED, job.worker_id, reason, now)
        return True
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED, "lease_owner": None, "lease_expires_at": None,
        "run_after": now + delay, "last_error": reason, "updated_at": now,
    }
    if not count_attempt:
        values["attempts"] = Job.attempts - 1
    if not _finish(session, job, values):
        return False
    _event(session, job.id, EventKind.DEFERRED, job.worker_id,
           f"attempt {job.attempt}/{job.max_attempts}{'' if count_attempt else ' (not counted)'}, "
           f"next run in {delay.total_seconds():.1f} s: {reason}"[:MAX_ERROR_CHARS], now)
    return True


def release(session: Session, job: ClaimedJob, *, now: datetime | None = None) -> bool:
    """Give the job back unfinished (clean shutdown); the attempt is not counted."""
    now = now or utcnow()
    if not _finish(session, job, {
        "status": JobStatus.QUEUED, "lease_owner": None, "lease_expires_at": None,
        "attempts": Job.attempts - 1, "updated_at": now,
    }):
        return False
    _event(session, job.id, EventKind.RELEASED, job.worker_id, None, now)
    return True


def fail_exhausted_leases(session: Session, *, now: datetime | None = None) -> list[int]:
    """Fail running jobs whose lease expired on their last attempt.

    Without this a job that kills its worker every time (say, out of memory)
    would stay "running" forever; it is not claimable again by design.
    """
    now = now or utcnow()
    error = "lease expired on the final attempt: the worker stopped without finishing"
    rows = session.execute(
        update(Job)
        .where(
            Job.status == JobStatus.RUNNING,
            Job.lease_expires_at < now,
            Job.attempts >= Job.max_attempts,
        )
        .values(status=JobStatus.FAILED, last_error=error, updated_at=now, finished_at=now,
                lease_expires_at=None)
        .returning(Job.id, Job.lease_owner)
        .execution_options(synchronize_session=False)
    ).all()
    for job_id, owner in rows:
        _event(session, job_id, EventKind.LEASE_EXPIRED, owner, f"lease of {owner} expired", now)
        _event(session, job_id, EventKind.FAILED, None, error, now)
    return [job_id for job_id, _ in rows]


def count_by_status(session: Session) -> dict[str, int]:
    """Jobs per status, for status displays."""
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: count for status, count in rows}
