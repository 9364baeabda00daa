"""A handler's RetryAfter: the job runs again after the handler's delay, counted or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from node.db.engine import session_factory
from node.db.models import Job
from node.queue.jobs import claim, defer, enqueue
from tests.queue.helpers import events_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_uncounted_deferral_gives_the_attempt_back(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        job_id = enqueue(session, "k", None, {}, max_attempts=2, now=T0).id
    with sessions.begin() as session:
        job = claim(session, "w", ["k"], timedelta(seconds=30), now=T0)
        assert job is not None and job.attempt == 1
        assert defer(session, job, timedelta(seconds=5), "breaker open", count_attempt=False, now=T0)
    with sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert (row.status, row.attempts, row.run_after) == ("queued", 0, T0 + timedelta(seconds=5))
    with sessions.begin() as session:
        assert claim(session, "w", ["k"], timedelta(seconds=30), now=T0 + timedelta(seconds=4)) is None
    assert events_of(sessions, job_id)[-1] == "deferred"


def test_counted_deferral_on_the_last_attempt_fails_the_job(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        job_id = enqueue(session, "k", None, {}, max_attempts=2, now=T0).id
    for attempt in (1, 2):
        now = T0 + timedelta(seconds=10 * attempt)
        with sessions.begin() as session:
            job = claim(session, "w", ["k"], timedelta(seconds=30), now=now)
            assert job is not None and job.attempt == attempt
            assert defer(session, job, timedelta(seconds=1), "not yet", count_attempt=True, now=now)
    with sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None and (row.status, row.attempts) == ("failed", 2)
    assert events_of(sessions, job_id)[-2:] == ["claimed", "failed"]
