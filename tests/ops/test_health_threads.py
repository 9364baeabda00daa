"""/healthz is unhealthy when a thread the process needs has ended: nothing else would show it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from node.db.engine import session_factory
from node.db.models import JobStatus
from node.metrics.health import HealthCheck
from node.periodic import Periodic
from node.queue.jobs import ClaimedJob, PermanentJobError, enqueue
from node.queue.worker import JobContext, WorkerPool
from node.settings import QueueSettings
from tests.queue.helpers import wait_until


def _broken_step() -> None:
    raise RuntimeError("a bug")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_periodic_thread_that_ended_on_a_bug_makes_the_process_unhealthy(
        engine: Engine, tmp_path: Path) -> None:
    health = HealthCheck(session_factory(engine), [tmp_path], timedelta(minutes=5))
    monitor = Periodic("completion monitor", _broken_step, timedelta(seconds=0.01), (OSError,))
    stopped_on_purpose = Periodic("retention", lambda: None, timedelta(seconds=0.01), (OSError,))
    health.watch("completion monitor", lambda: monitor.died)
    health.watch("retention", lambda: stopped_on_purpose.died)
    assert health.run().ok
    monitor.start()
    stopped_on_purpose.start()
    stopped_on_purpose.stop()
    wait_until(lambda: monitor.died, "the monitor's thread to end")
    report = health.run()
    assert not report.ok
    assert report.as_json()["checks"]["threads"] == {"ok": False, "stopped": ["completion monitor"]}


def _failing(job: ClaimedJob, context: JobContext) -> None:
    raise PermanentJobError("fails")


def _broken_hook(session: Session, job_id: int, status: JobStatus, error: str, now: datetime) -> None:
    raise RuntimeError("a bug in a failure hook")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_thread_that_ended_on_a_bug_is_seen(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        enqueue(session, "broken", None, {}, max_attempts=1)
    pool = WorkerPool(QueueSettings(workers=1, poll_interval=timedelta(seconds=0.02)), sessions,
                      {"broken": _failing}, "health-test", on_failure={"broken": _broken_hook})
    assert not pool.died
    pool.start()
    try:
        wait_until(lambda: pool.died, "the worker thread to end")
    finally:
        pool.stop(1)
    assert not pool.died  # a pool stopped on purpose is not reported
