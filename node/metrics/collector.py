"""Metrics read from the database at scrape time: the queue, studies, deliveries, circuits.

Every process (receiver or worker) computes these from the shared database
when scraped, so all of them report the same values; a dashboard takes
``max`` over instances, not ``sum``.

The delivery tables (migration 0003 of the results issue) are optional: the
collector reads them only when they exist with the columns named in
:data:`DELIVERY_SCHEMA`, so it works on a database from before them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, and_, case, column, func, inspect, or_, select, table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Job, JobStatus, Study, utcnow

log = logging.getLogger(__name__)

CIRCUIT_STATES = ("closed", "half_open", "open")


@dataclass(frozen=True)
class DeliverySchema:
    """Where delivery state lives: tables and the columns the collector reads."""

    deliveries: str = "deliveries"  # the outbox: one row per analysis result and destination
    destination: str = "destination"  # deliveries.<destination>: the destination's name
    status: str = "status"  # deliveries.<status>: queued, sending, delivered, dead
    attempts: str = "delivery_attempts"  # one row per attempt
    attempt_delivery: str = "delivery_id"  # delivery_attempts.<...> -> deliveries.id
    attempt_outcome: str = "outcome"  # delivery_attempts.<...>: delivered, partial, failed
    circuits: str = "destination_breakers"  # one row per destination
    circuit_destination: str = "destination"
    circuit_state: str = "state"  # one of CIRCUIT_STATES


DELIVERY_SCHEMA = DeliverySchema()


def due_jobs(session: Session | Connection, now: datetime) -> dict[str, tuple[int, float]]:
    """Per job kind with any: how many jobs a worker could claim now, and the oldest one's wait.

    Claimable as :func:`node.queue.jobs.claim` sees it: queued and due (waiting since
    ``run_after``), or running with an expired lease and attempts left (its worker died;
    waiting since the lease expired).
    """
    queued_due = and_(Job.status == JobStatus.QUEUED, Job.run_after <= now)
    lease_lost = and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now,
                      Job.attempts < Job.max_attempts)
    since = case((Job.status == JobStatus.QUEUED, Job.run_after), else_=Job.lease_expires_at)
    rows = session.execute(
        select(Job.kind, func.count(Job.id), func.min(since))
        .where(or_(queued_due, lease_lost))
        .group_by(Job.kind)
    ).all()
    return {kind: (count, max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
            for kind, count, oldest in rows}


class DatabaseCollector(Collector):
    """A prometheus-client collector querying the node's database on each scrape."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow,
                 schema: DeliverySchema = DELIVERY_SCHEMA) -> None:
        self._sessions = sessions
        self._clock = clock
        self._schema = schema

    def describe(self) -> list[Metric]:
        # No up-front description: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lsent_database_up", "1 when this process could query the database")
        try:
            with self._sessions() as session:
                metrics = [*self._queue(session), self._studies(session), *self._deliveries(session)]
        except SQLAlchemyError as exc:
            log.warning("metrics: database query failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _queue(self, session: Session) -> list[Metric]:
        now = self._clock()
        jobs = GaugeMetricFamily("lsent_queue_jobs", "Jobs by kind and status (queued: the queue depth)",
                                 labels=["kind", "status"])
        due = GaugeMetricFamily("lsent_queue_due_jobs", "Jobs a worker could claim now: queued and due, "
                                "or running with an expired lease", labels=["kind"])
        age = GaugeMetricFamily("lsent_queue_oldest_due_seconds",
                                "How long the oldest claimable job has waited (0: none waiting)",
                                labels=["kind"])
        kinds: set[str] = set()
        for kind, status, count in session.execute(
            select(Job.kind, Job.status, func.count(Job.id)).group_by(Job.kind, Job.status)
        ):
            kinds.add(kind)
            jobs.add_metric([kind, status], count)
        waiting = due_jobs(session, now)
        for kind in sorted(kinds):
            count, oldest = waiting.get(kind, (0, 0.0))
            due.add_metric([kind], count)
            age.add_metric([kind], oldest)
        return [jobs, due, age]

    @staticmethod
    def _studies(session: Session) -> Metric:
        studies = GaugeMetricFamily("lsent_studies", "Studies by status", labels=["status"])
        for status, count in session.execute(
            select(Study.status, func.count(Study.id)).group_by(Study.status)
        ):
            studies.add_metric([status], count)
        return studies

    def _deliveries(self, session: Session) -> list[Metric]:
        s = self._schema
        columns = self._columns(session, (s.deliveries, s.attempts, s.circuits))
        metrics: list[Metric] = []
        if {"id", s.destination, s.status} <= columns[s.deliveries]:
            deliveries = table(s.deliveries, column("id"), column(s.destination), column(s.status))
            family = GaugeMetricFamily("lsent_deliveries", "Deliveries by destination and status",
                                       labels=["destination", "status"])
            destination, status = deliveries.c[s.destination], deliveries.c[s.status]
            for name, state, count in session.execute(
                select(destination, status, func.count()).group_by(destination, status)
            ):
                family.add_metric([str(name), str(state)], count)
            metrics.append(family)
            if {s.attempt_delivery, s.attempt_outcome} <= columns[s.attempts]:
                attempts = table(s.attempts, column(s.attempt_delivery), column(s.attempt_outcome))
                outcome = attempts.c[s.attempt_outcome]
                attempted = CounterMetricFamily(
                    "lsent_delivery_attempts", "Delivery attempts by destination and outcome",
                    labels=["destination", "outcome"])
                for name, result, count in session.execute(
                    select(destination, outcome, func.count())
                    .select_from(attempts.join(deliveries, attempts.c[s.attempt_delivery] == deliveries.c.id))
                    .group_by(destination, outcome)
                ):
                    attempted.add_metric([str(name), str(result)], count)
                metrics.append(attempted)
        if {s.circuit_destination, s.circuit_state} <= columns[s.circuits]:
            circuits = table(s.circuits, column(s.circuit_destination), column(s.circuit_state))
            family = GaugeMetricFamily("lsent_circuit_state",
                                       "1 for each destination's current circuit state (closed, half_open, "
                                       "open), 0 for the others", labels=["destination", "state"])
            for name, current in session.execute(
                select(circuits.c[s.circuit_destination], circuits.c[s.circuit_state])
            ):
                for state in CIRCUIT_STATES:
                    family.add_metric([str(name), state], 1 if str(current) == state else 0)
            metrics.append(family)
        return metrics

    @staticmethod
    def _columns(session: Session, tables: tuple[str, ...]) -> dict[str, set[str]]:
        inspector = inspect(session.connection())
        present = set(inspector.get_table_names())
        return {name: ({c["name"] for c in inspector.get_columns(name)} if name in present else set())
                for name in tables}
