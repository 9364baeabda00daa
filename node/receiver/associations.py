"""Association bookkeeping: the allowlist decision and one ``associations`` row per request.

Every association request gets a row, rejected ones included, so an audit
can see who tried to send what. The row is opened on acceptance (or written
closed on rejection) and closed on release, abort or a dropped connection.
At its end an association is logged once with what it sent: instances
stored, duplicates and refusals, then one line per study it stored into
(single instances are logged at DEBUG only).

A node killed (``kill -9``, power loss) cannot close its rows. Each row
therefore names the node process that wrote it and the listener it belongs
to (:class:`NodeIdentity`); at start-up a node closes the rows a previous
process of the same listener left open (:meth:`AssociationLog.sweep`), and
never those of other nodes sharing the database. The rows of a node that
never comes back stay open; completion stops waiting for them after
``study.association_hold`` (see :mod:`node.queue.completion`).
"""

from __future__ import annotations

import logging
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association as PeerAssociation
from pynetdicom.events import Event
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import (
    Association,
    AssociationResult,
    AssociationStudy,
    Instance,
    Series,
    Study,
    StudyStatus,
    utcnow,
)
from node.metrics.receiving import ReceptionEvents
from node.receiver.negotiation import CallerPolicy
from node.rejections import CALLED_AE_UNKNOWN, reason_in_words

log = logging.getLogger(__name__)

NODE_RESTARTED = "node restarted"
NODE_STOPPING = "node shutting down"  # the node's own abort of what its shutdown grace did not see end

# A-ASSOCIATE-RJ: rejected-permanent, by the service user, calling AE title not recognised.
_REJECT_CALLER = (0x01, 0x01, 0x03)


@dataclass(frozen=True)
class NodeIdentity:
    """Who writes association rows: this process, and the listener it serves.

    ``listener`` is stable across restarts (host name, AE title, configured
    address and port): two processes with the same one cannot run at once,
    since the second cannot bind the port.
    """

    process: str
    listener: str

    @classmethod
    def of(cls, process: str, ae_title: str, host: str, port: int) -> NodeIdentity:
        if not process:
            raise ValueError("process must not be empty")
        return cls(process[:128], f"{socket.gethostname()}/{ae_title}@{host}:{port}"[:255])


@dataclass(frozen=True)
class Peer:
    calling_ae: str
    called_ae: str
    address: str
    port: int


@dataclass
class _StoreAnswers:
    succeeded: int = 0
    refused: int = 0


StoreHandlerFunction = Callable[[Event], int | Dataset]


@dataclass(frozen=True)
class _Unclosed:
    """An association's end that the database did not take; written again later."""

    row_id: int
    result: AssociationResult
    reason: str | None
    ended_at: datetime


class AssociationLog:
    """Writes ``associations`` rows."""

    def __init__(self, sessions: sessionmaker[Session], *, tls: bool, node: NodeIdentity,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._tls = tls
        self._node = node
        self._clock = clock

    def sweep(self, process: str | None = None) -> int:
        """Close as aborted the rows left open by a previous process of this listener; how many.

        Call it once the listener is bound (no other live process can own it
        then), before this node's extra receiver processes start. With
        ``process``, close only the rows of that process: one of those extra
        receivers, which died. The quiet period of the studies still receiving
        starts again (of every one when the listener starts; of those the dead
        process was receiving otherwise).
        """
        owner = (Association.node_id == process) if process is not None else (
            Association.node_id != self._node.process)
        now = self._clock()
        with self._sessions.begin() as session:
            ids = session.scalars(
                update(Association)
                .where(Association.result == AssociationResult.OPEN,
                       Association.node_listener == self._node.listener, owner)
                .values(result=AssociationResult.ABORTED.value, reason=NODE_RESTARTED, ended_at=now)
                .returning(Association.id)
                .execution_options(synchronize_session=False)
            ).all()
            # Nothing could be received while the listener was down, however long: the quiet period
            # starts again now, so that a PACS cut off by a crash or a shutdown, or refused while the
            # node was down, finds the study still receiving when it sends the rest, instead of
            # the part received before analysed the moment the node is back.
            receiving = Study.status == StudyStatus.RECEIVING
            if process is not None:  # one extra receiver died: only what it was receiving
                receiving &= Study.id.in_(select(AssociationStudy.study_id)
                                          .where(AssociationStudy.association_id.in_(ids)))
            session.execute(update(Study).where(receiving).values(last_received_at=now)
                            .execution_options(synchronize_session=False))
        swept = len(ids)
        if swept:
            log.warning("closed %d association(s) left open by %s of %s: %s", swept,
                        process or "an earlier process", self._node.listener, NODE_RESTARTED)
        return swept

    def opened(self, peer: Peer) -> int:
        return self._insert(peer, AssociationResult.OPEN, None)

    def rejected(self, peer: Peer, reason: str) -> int:
        return self._insert(peer, AssociationResult.REJECTED, reason, ended=True)

    def now(self) -> datetime:
        return self._clock()

    def closed(self, association_id: int, result: AssociationResult, reason: str | None = None,
               *, ended_at: datetime | None = None) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(Association)
                .where(Association.id == association_id)
                .values(result=result.value, reason=reason, ended_at=ended_at or self._clock())
            )

    def stored_by_study(self, association_id: int) -> dict[str, int]:
        """Study Instance UID -> instances the association stored into it."""
        with self._sessions() as session:
            rows = session.execute(
                select(Study.study_instance_uid, func.count(Instance.id))
                .join(Series, Series.study_id == Study.id)
                .join(Instance, Instance.series_id == Series.id)
                .where(Instance.association_id == association_id)
                .group_by(Study.study_instance_uid)
                .order_by(Study.study_instance_uid)
            ).all()
        return {uid: int(count) for uid, count in rows}

    def _insert(self, peer: Peer, result: AssociationResult, reason: str | None,
                ended: bool = False) -> int:
        now = self._clock()
        row = Association(
            calling_ae=peer.calling_ae[:16], called_ae=peer.called_ae[:16],
            peer_address=peer.address[:64], peer_port=peer.port, tls=self._tls,
            started_at=now, ended_at=now if ended else None,
            result=result.value, reason=reason, instances_received=0,
            node_id=self._node.process, node_listener=self._node.listener,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id


class AssociationTracker:
    """pynetdicom association event handlers; knows each open association's row id."""

    def __init__(self, policy: CallerPolicy, association_log: AssociationLog,
                 metrics: ReceptionEvents | None = None, *, retry_after: float = 5.0) -> None:
        self._policy = policy
        self._log = association_log
        self._metrics = metrics
        self._lock = threading.Lock()
        self._rows: weakref.WeakKeyDictionary[PeerAssociation, int] = weakref.WeakKeyDictionary()
        self._answers: weakref.WeakKeyDictionary[PeerAssociation, _StoreAnswers] = weakref.WeakKeyDictionary()
        # A C-STORE handler still running when the peer aborts asks for the row after the abort and
        # close handlers removed it: its instance belongs to that row, not to a second one opened for it.
        self._ended: weakref.WeakKeyDictionary[PeerAssociation, int] = weakref.WeakKeyDictionary()
        # An open row holds its studies' completion for up to study.association_hold, so an end
        # the database refused (a failover, a busy SQLite) is written again until it is taken.
        self._unclosed: list[_Unclosed] = []
        self._retry: threading.Timer | None = None
        self._retry_after = retry_after
        self._stopping = False

    def handlers(self) -> list[tuple[evt.EventType, Callable[[Event], None]]]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
        ]

    def counting(self, store: StoreHandlerFunction) -> StoreHandlerFunction:
        """``store`` (the C-STORE handler) with its answers counted per association."""

        def counted(event: Event) -> int | Dataset:
            answer = store(event)
            status = answer if isinstance(answer, int) else int(answer.Status)
            with self._lock:
                answers = self._answers.setdefault(event.assoc, _StoreAnswers())
                if status == 0x0000:
                    answers.succeeded += 1
                else:
                    answers.refused += 1
            return answer

        return counted

    def row_id(self, assoc: PeerAssociation) -> int:
        """The association's row; written now if that failed when it was accepted.

        Its instances must name it, or its studies could complete while it is
        still sending. Raises :class:`SQLAlchemyError` if it still cannot be
        written (the C-STORE is then answered "retry later").
        """
        with self._lock:
            row_id = self._rows.get(assoc)
            ended = self._ended.get(assoc) if row_id is None else None
        if ended is not None:
            log.info("association %d has ended; a C-STORE it sent before is recorded on it", ended)
            return ended
        return row_id if row_id is not None else self._open(assoc)

    def _open(self, assoc: PeerAssociation) -> int:
        peer = _peer(assoc)
        row_id = self._log.opened(peer)
        with self._lock:
            self._rows[assoc] = row_id
        if self._metrics is not None:
            self._metrics.association_accepted()
        log.info("association %d accepted from %s:%d (%r -> %r)",
                 row_id, peer.address, peer.port, peer.calling_ae, peer.called_ae)
        return row_id

    def on_requested(self, event: Event) -> None:
        peer = _peer(event.assoc)
        reason = self._policy.refusal(peer.calling_ae, peer.address)
        if reason is None:
            return
        log.warning("rejecting association from %s:%d (%r -> %r): %s",
                    peer.address, peer.port, peer.calling_ae, peer.called_ae, reason)
        event.assoc.acse.send_reject(*_REJECT_CALLER)
        self._record_rejection(peer, reason)
        # As pynetdicom does after its own rejections: stop the DUL once the peer has gone.
        event.assoc.kill()

    def on_rejected(self, event: Event) -> None:
        primitive = event.assoc.acceptor.primitive
        key = (int(getattr(primitive, "result_source", 0) or 0),
               int(getattr(primitive, "diagnostic", 0) or 0))
        reason = reason_in_words(*key)
        peer = _peer(event.assoc)
        if key == CALLED_AE_UNKNOWN:
            reason = f"{reason}: {peer.called_ae!r} is not {event.assoc.acceptor.ae_title.strip()!r}"
        log.warning("rejected association from %s:%d (%r -> %r): %s",
                    peer.address, peer.port, peer.calling_ae, peer.called_ae, reason)
        self._record_rejection(peer, reason)

    def on_accepted(self, event: Event) -> None:
        try:
            self._open(event.assoc)
        except SQLAlchemyError:
            peer = _peer(event.assoc)
            log.exception("could not record the association from %s:%d (%s); trying again at its first "
                          "C-STORE", peer.address, peer.port, peer.calling_ae)

    def on_released(self, event: Event) -> None:
        self._close(event.assoc, AssociationResult.RELEASED, None)

    def on_aborted(self, event: Event) -> None:
        self._close(event.assoc, AssociationResult.ABORTED, NODE_STOPPING if self._stopping else "A-ABORT")

    def stopping(self) -> None:
        """The node aborts what is still open at shutdown: those aborts are its own, not the peers'."""
        self._stopping = True

    def on_connection_closed(self, event: Event) -> None:
        self._close(event.assoc, AssociationResult.ABORTED, "connection closed without release")

    def _close(self, assoc: PeerAssociation, result: AssociationResult, reason: str | None) -> None:
        with self._lock:
            row_id = self._rows.pop(assoc, None)
            answers = self._answers.pop(assoc, _StoreAnswers())
            if row_id is not None:
                self._ended[assoc] = row_id
        if row_id is None:
            return
        if self._metrics is not None:
            self._metrics.association_ended(result.value)
        ended_at = self._log.now()
        try:
            self._log.closed(row_id, result, reason, ended_at=ended_at)
        except SQLAlchemyError:
            log.exception("could not record the end of association %d; trying again in %g s", row_id,
                          self._retry_after)
            self._keep_unclosed([_Unclosed(row_id, result, reason, ended_at)])
            return
        try:
            by_study = self._log.stored_by_study(row_id)
        except SQLAlchemyError:
            log.exception("could not count what association %d stored", row_id)
            return
        stored = sum(by_study.values())
        # a success that stored nothing new answered an instance already stored
        duplicates = max(0, answers.succeeded - stored)
        log.info("association %d %s: %s stored, %s, %d refused", row_id, result.value,
                 _count(stored, "instance"), _count(duplicates, "duplicate"), answers.refused)
        for study_uid, count in by_study.items():
            log.info("association %d stored %s of study %s", row_id, _count(count, "instance"), study_uid)

    def unclosed(self) -> list[int]:
        """The rows whose end is still to be written."""
        with self._lock:
            return [item.row_id for item in self._unclosed]

    def _keep_unclosed(self, items: list[_Unclosed]) -> None:
        with self._lock:
            self._unclosed.extend(items)
            if self._retry is None:
                self._retry = threading.Timer(self._retry_after, self._close_again)
                self._retry.daemon = True
                self._retry.start()

    def _close_again(self) -> None:
        with self._lock:
            pending, self._unclosed, self._retry = self._unclosed, [], None
        for number, item in enumerate(pending):
            try:
                self._log.closed(item.row_id, item.result, item.reason, ended_at=item.ended_at)
            except SQLAlchemyError as exc:
                log.warning("could not yet record the end of association %d: %s", item.row_id, exc)
                self._keep_unclosed(pending[number:])
                return
            log.info("association %d %s: its end recorded late", item.row_id, item.result.value)

    def _record_rejection(self, peer: Peer, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.association_rejected()
        try:
            self._log.rejected(peer, reason)
        except SQLAlchemyError:
            log.exception("could not record the rejected association from %s:%d",
                          peer.address, peer.port)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _peer(assoc: PeerAssociation) -> Peer:
    request = assoc.requestor.primitive
    calling = getattr(request, "calling_ae_title", None) or assoc.requestor.ae_title or ""
    called = getattr(request, "called_ae_title", None) or assoc.acceptor.ae_title or ""
    return Peer(
        calling_ae=str(calling).strip(),
        called_ae=str(called).strip(),
        address=str(assoc.requestor.address),
        port=int(assoc.requestor.port or 0),
    )
