"""In-process job timings: how long each job ran, and how long a study waited for its analysis.

The handlers a worker pool runs are wrapped here, so the queue and the tasks
stay unaware of metrics. Each worker process observes the jobs it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from node.db.models import Study, utcnow
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import ClaimedJob, JobCancelled
from node.queue.worker import JobContext, JobHandler

# An analysis takes seconds to minutes; a study's wait adds the quiet period and the queue.
_JOB_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
_LATENCY_BUCKETS = (10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200)


class JobMetrics:
    """``lsent_job_duration_seconds`` and ``lsent_study_latency_seconds``."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._duration = Histogram(
            "lsent_job_duration_seconds", "Time a handler ran, by job kind and outcome "
            "(succeeded, failed, cancelled); kind analyze_study is the analysis time",
            ["kind", "outcome"], buckets=_JOB_BUCKETS, registry=registry)
        self._latency = Histogram(
            "lsent_study_latency_seconds", "From a study's last received instance to the end of its "
            "successful analysis (quiet period, queue wait and analysis)",
            buckets=_LATENCY_BUCKETS, registry=registry)

    def timed(self, handlers: Mapping[str, JobHandler]) -> dict[str, JobHandler]:
        """``handlers`` with each run timed; the handlers themselves are unchanged."""
        return {kind: self._wrap(kind, handler) for kind, handler in handlers.items()}

    def _wrap(self, kind: str, handler: JobHandler) -> JobHandler:
        def timed(job: ClaimedJob, context: JobContext) -> None:
            outcome = "failed"
            started = time.monotonic()
            try:
                handler(job, context)
                outcome = "succeeded"
            except JobCancelled:
                outcome = "cancelled"
                raise
            finally:
                self._duration.labels(kind, outcome).observe(time.monotonic() - started)
            if kind == ANALYZE_STUDY and job.study_id is not None:
                self._observe_latency(job.study_id, context)

        return timed

    def _observe_latency(self, study_id: int, context: JobContext) -> None:
        try:
            with context.sessions() as session:
                last = session.scalar(select(Study.last_received_at).where(Study.id == study_id))
        except SQLAlchemyError:
            return  # the job succeeded; a missed observation is not worth failing it
        if last is not None:
            self._latency.observe(max(0.0, (self._clock() - last).total_seconds()))
