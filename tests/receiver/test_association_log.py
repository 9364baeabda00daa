"""An association's end that the database refuses is written again, so its studies can complete."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from node.db.engine import session_factory
from node.db.models import Association, AssociationResult
from node.receiver.associations import AssociationLog, AssociationTracker, NodeIdentity, Peer
from node.receiver.negotiation import CallerPolicy
from tests.queue.helpers import wait_until


class FlakyLog(AssociationLog):
    """The database refuses the first ``failures`` ends (a failover, a busy SQLite)."""

    failures = 2

    def closed(self, association_id: int, result: AssociationResult, reason: str | None = None,
               *, ended_at: datetime | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE associations", {}, Exception("database is locked"))
        super().closed(association_id, result, reason, ended_at=ended_at)


@dataclass
class _Side:
    ae_title: str
    address: str = "127.0.0.1"
    port: int = 40000
    primitive: object = None


@dataclass(eq=False)
class _PeerAssociation:
    requestor: _Side = field(default_factory=lambda: _Side("MODALITY"))
    acceptor: _Side = field(default_factory=lambda: _Side("LSENTINEL"))


@dataclass
class _Event:
    assoc: _PeerAssociation


def _row(engine: Engine) -> Association:
    with session_factory(engine)() as session:
        return session.scalars(select(Association)).one()


def test_an_end_the_database_refused_is_recorded_later(engine: Engine) -> None:
    log = FlakyLog(session_factory(engine), tls=False,
                   node=NodeIdentity.of("test", "LSENTINEL", "127.0.0.1", 11112))
    tracker = AssociationTracker(CallerPolicy([]), log, retry_after=0.05)
    event = _Event(_PeerAssociation())
    tracker.on_accepted(event)  # type: ignore[arg-type]
    assert _row(engine).result == AssociationResult.OPEN
    released = log.now()
    tracker.on_released(event)  # type: ignore[arg-type]
    # the first write and the first retry fail; the second retry records the release
    wait_until(lambda: _row(engine).result == AssociationResult.RELEASED, "the late end")
    row = _row(engine)
    assert row.ended_at is not None and abs((row.ended_at - released).total_seconds()) < 1
    assert tracker.unclosed() == [] and log.failures == 0


class RefusesFirstOpen(AssociationLog):
    """The database refuses the row of the association when it is accepted."""

    refused = False

    def opened(self, peer: Peer) -> int:
        if not self.refused:
            self.refused = True
            raise OperationalError("INSERT INTO associations", {}, Exception("database is locked"))
        return super().opened(peer)


def test_an_association_whose_row_was_refused_gets_it_at_its_first_store(engine: Engine) -> None:
    """Its instances must name it: the completion monitor holds its studies while it is open."""
    log = RefusesFirstOpen(session_factory(engine), tls=False,
                           node=NodeIdentity.of("test", "LSENTINEL", "127.0.0.1", 11112))
    tracker = AssociationTracker(CallerPolicy([]), log)
    event = _Event(_PeerAssociation())
    tracker.on_accepted(event)  # type: ignore[arg-type]
    with session_factory(engine)() as session:
        assert session.scalars(select(Association)).all() == []
    row_id = tracker.row_id(event.assoc)  # type: ignore[arg-type]
    assert _row(engine).id == row_id and _row(engine).result == AssociationResult.OPEN
    assert tracker.row_id(event.assoc) == row_id  # type: ignore[arg-type]
    tracker.on_released(event)  # type: ignore[arg-type]
    assert _row(engine).result == AssociationResult.RELEASED


def test_a_store_finishing_after_an_abort_attaches_to_the_closed_row(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """The order seen with an A-ABORT mid-transfer: abort, the store handler's row lookup, then close."""
    log = AssociationLog(session_factory(engine), tls=False,
                         node=NodeIdentity.of("test", "LSENTINEL", "127.0.0.1", 11112))
    tracker = AssociationTracker(CallerPolicy([]), log)
    event = _Event(_PeerAssociation())
    caplog.set_level("INFO", logger="node.receiver.associations")
    tracker.on_accepted(event)  # type: ignore[arg-type]
    row_id = _row(engine).id
    tracker.on_aborted(event)  # type: ignore[arg-type]
    assert tracker.row_id(event.assoc) == row_id  # type: ignore[arg-type]
    tracker.on_connection_closed(event)  # type: ignore[arg-type]
    row = _row(engine)  # one row only
    assert (row.id, row.result, row.reason) == (row_id, AssociationResult.ABORTED, "A-ABORT")
    messages = [record.getMessage() for record in caplog.records]
    assert sum(" accepted from " in message for message in messages) == 1
    assert sum(message.startswith(f"association {row_id} aborted:") for message in messages) == 1
