"""A circuit breaker per destination, kept in the database so every process shares it.

closed: deliveries are sent; ``failure_threshold`` connection failures in a
row open it. open: deliveries wait until ``open_until`` without using an
attempt. Then the first worker to come turns it half-open and probes the
destination with C-ECHO: success closes it, failure opens it for another
``open_for``. Other workers look again every tenth of ``open_for`` while
the probe runs (its deadline is ``open_until`` again, so a probe that dies
with its worker is taken over).

Only connection failures count (no answer: refused, unreachable, TLS
failure, abort, timeout). A destination that answers is up, whatever it
answers: an A-ASSOCIATE-RJ, an association without a context for an
object's SOP class, a C-STORE error status. Its deliveries retry on their
own backoff, or end when retrying cannot help; opening the circuit would only
hold back every other delivery to it.
Every function runs in the caller's transaction and locks the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from node.db.audit import BreakerState, DestinationBreaker
from node.settings import CircuitBreakerSettings

MAX_ERROR_CHARS = 2000
PROBE_POLLS = 10


class Action(StrEnum):
    SEND = "send"
    PROBE = "probe"
    WAIT = "wait"


@dataclass(frozen=True)
class Gate:
    action: Action
    wait: timedelta = timedelta(0)


def _row(session: Session, destination: str, now: datetime) -> DestinationBreaker:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(DestinationBreaker)
        .values(destination=destination, state=BreakerState.CLOSED, consecutive_failures=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[DestinationBreaker.destination])
    )
    return session.scalars(
        select(DestinationBreaker)
        .where(DestinationBreaker.destination == destination)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def gate(session: Session, destination: str, worker: str, settings: CircuitBreakerSettings,
         now: datetime) -> Gate:
    """May ``worker`` send to ``destination`` now, must it probe first, or wait (how long)?"""
    row = _row(session, destination, now)
    if row.state == BreakerState.CLOSED:
        return Gate(Action.SEND)
    until = row.open_until or now
    if row.state == BreakerState.OPEN and now < until:
        return Gate(Action.WAIT, until - now)
    if row.state == BreakerState.HALF_OPEN and row.probe_owner not in (None, worker) and now < until:
        # A probe takes seconds: looking again after a fraction of open_for lets the
        # others follow soon after it closes the circuit, instead of a whole open_for later.
        return Gate(Action.WAIT, min(until - now, settings.open_for / PROBE_POLLS))
    row.state = BreakerState.HALF_OPEN
    row.probe_owner = worker
    row.open_until = now + settings.open_for
    row.updated_at = now
    return Gate(Action.PROBE)


def record_probe(session: Session, destination: str, error: str | None, settings: CircuitBreakerSettings,
                 now: datetime) -> None:
    """The C-ECHO probe's outcome: None closes the breaker, an error opens it again."""
    row = _row(session, destination, now)
    if error is None:
        _close(row, now)
    else:
        _open(row, error, settings, now)


def record_send(session: Session, destination: str, error: str | None, settings: CircuitBreakerSettings,
                now: datetime) -> None:
    """A send attempt's connection outcome: None (the destination answered) or why it did not."""
    row = _row(session, destination, now)
    if error is None:
        _close(row, now)
        return
    row.consecutive_failures += 1
    row.last_error = error[:MAX_ERROR_CHARS]
    row.updated_at = now
    if row.consecutive_failures >= settings.failure_threshold:
        _open(row, error, settings, now)


def _close(row: DestinationBreaker, now: datetime) -> None:
    row.state = BreakerState.CLOSED
    row.consecutive_failures = 0
    row.opened_at = None
    row.open_until = None
    row.probe_owner = None
    row.updated_at = now


def _open(row: DestinationBreaker, error: str, settings: CircuitBreakerSettings, now: datetime) -> None:
    row.state = BreakerState.OPEN
    row.opened_at = now
    row.open_until = now + settings.open_for
    row.probe_owner = None
    row.last_error = error[:MAX_ERROR_CHARS]
    row.updated_at = now
