"""The circuit breaker's states in the database, on an explicit clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import BreakerState, DestinationBreaker
from node.delivery import breaker
from node.delivery.breaker import Action, Gate
from node.settings import CircuitBreakerSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = CircuitBreakerSettings(failure_threshold=3, open_for=timedelta(seconds=60))


def _state(sessions: sessionmaker[Session]) -> tuple[str, int]:
    with sessions() as session:
        row = session.get(DestinationBreaker, "pacs")
        assert row is not None
        return row.state, row.consecutive_failures


def _gate(sessions: sessionmaker[Session], worker: str, at: datetime) -> Gate:
    with sessions.begin() as session:
        return breaker.gate(session, "pacs", worker, SETTINGS, at)


def test_failures_open_the_breaker_and_a_probe_closes_it(sessions: sessionmaker[Session]) -> None:
    assert _gate(sessions, "a", T0) == Gate(Action.SEND)
    for n in range(1, 3):
        with sessions.begin() as session:
            breaker.record_send(session, "pacs", "refused", SETTINGS, T0)
        assert _state(sessions) == (BreakerState.CLOSED, n)
    with sessions.begin() as session:
        breaker.record_send(session, "pacs", None, SETTINGS, T0)  # a success resets the count
    assert _state(sessions) == (BreakerState.CLOSED, 0)
    for _ in range(3):
        with sessions.begin() as session:
            breaker.record_send(session, "pacs", "refused", SETTINGS, T0)
    assert _state(sessions)[0] == BreakerState.OPEN
    assert _gate(sessions, "a", T0 + timedelta(seconds=20)) == Gate(Action.WAIT, timedelta(seconds=40))
    probe_at = T0 + timedelta(seconds=61)
    assert _gate(sessions, "a", probe_at) == Gate(Action.PROBE)
    # another worker waits a fraction of open_for while the probe runs
    assert _gate(sessions, "b", probe_at) == Gate(Action.WAIT, timedelta(seconds=6))
    with sessions.begin() as session:
        breaker.record_probe(session, "pacs", "still refused", SETTINGS, probe_at)
    assert _state(sessions)[0] == BreakerState.OPEN
    assert _gate(sessions, "b", probe_at + timedelta(seconds=30)).action == Action.WAIT
    again = probe_at + timedelta(seconds=60)
    assert _gate(sessions, "b", again) == Gate(Action.PROBE)
    with sessions.begin() as session:
        breaker.record_probe(session, "pacs", None, SETTINGS, again)
    assert _state(sessions) == (BreakerState.CLOSED, 0)
    assert _gate(sessions, "a", again) == Gate(Action.SEND)


def test_a_probe_abandoned_by_its_worker_is_taken_over(sessions: sessionmaker[Session]) -> None:
    for _ in range(3):
        with sessions.begin() as session:
            breaker.record_send(session, "pacs", "refused", SETTINGS, T0)
    probe_at = T0 + timedelta(seconds=60)
    assert _gate(sessions, "a", probe_at).action == Action.PROBE
    assert _gate(sessions, "b", probe_at + timedelta(seconds=61)) == Gate(Action.PROBE)
