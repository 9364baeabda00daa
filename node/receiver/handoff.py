"""Connections handed from the listening process to the least busy receiver process.

With ``dicom.receiver_processes`` > 1 only the main process listens. For each
connection it accepts, it picks the process with the fewest open connections
(itself included) on a shared :class:`LoadBoard` and, if that is another one,
passes the socket over a local pipe (``SCM_RIGHTS``). The kernel's own way to
spread a port over processes (``SO_REUSEPORT``) hashes each connection to a
process; with the few long associations a PACS opens, that often put two on
one process while another idled.

TLS is negotiated by the process that serves the connection.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

Address = tuple[str, int]
_BLOCKED = 2**30  # the count of a slot whose process is gone


class LoadBoard:
    """Open connections per receiver process (slot 0: the listening one), shared by all of them."""

    def __init__(self, counts: SynchronizedArray[Any]) -> None:
        if len(counts) < 2:
            raise ValueError(f"counts must have a slot per receiver process (>= 2), got {len(counts)}")
        self._counts = counts

    def __len__(self) -> int:
        return len(self._counts)

    def take_least_busy(self) -> int:
        """The slot with the fewest open connections (the lowest on a tie), counted one more."""
        with self._counts.get_lock():
            slot = min(range(len(self._counts)), key=self._counts.__getitem__)
            self._counts[slot] += 1
        return slot

    def take(self, slot: int) -> None:
        with self._counts.get_lock():
            self._counts[slot] += 1

    def release(self, slot: int) -> None:
        with self._counts.get_lock():
            self._counts[slot] = max(0, self._counts[slot] - 1)

    def reset(self, slot: int) -> None:
        """A process (re)started: it holds no connection yet."""
        with self._counts.get_lock():
            self._counts[slot] = 0

    def block(self, slot: int) -> None:
        """A process ended: never the least busy until it is started again (:meth:`reset`)."""
        with self._counts.get_lock():
            self._counts[slot] = _BLOCKED

    def counts(self) -> list[int]:
        with self._counts.get_lock():
            return [self._counts[slot] for slot in range(len(self._counts))]


class Handoff:
    """The listening process's side: the board and a pipe to each other receiver process."""

    def __init__(self, board: LoadBoard) -> None:
        self.board = board
        self._pipes: dict[int, tuple[Connection, int]] = {}
        self._lock = threading.Lock()

    def attach(self, slot: int, pipe: Connection, pid: int) -> None:
        if not 1 <= slot < len(self.board):
            raise ValueError(f"slot must be in 1..{len(self.board) - 1}, got {slot}")
        with self._lock:
            self._pipes[slot] = (pipe, pid)
        self.board.reset(slot)

    def detach(self, slot: int) -> None:
        with self._lock:
            target = self._pipes.pop(slot, None)
        if target is not None:
            target[0].close()
        self.board.block(slot)

    def send(self, slot: int, connection: socket.socket, address: Address) -> bool:
        """Pass ``connection`` to the process of ``slot``; False if it cannot take it."""
        with self._lock:
            target = self._pipes.get(slot)
            if target is None:
                return False
            pipe, pid = target
            try:
                pipe.send(address)
                send_handle(pipe, connection.fileno(), pid)
            except OSError as exc:  # the process ended a moment ago; the supervisor restarts it
                log.warning("could not hand a connection from %s:%s to receiver process %d: %s",
                            address[0], address[1], slot, exc)
                return False
        return True


class HandshakingServer(ThreadedAssociationServer):
    """Negotiates each connection's TLS (when on) in the thread that then serves its association.

    Negotiated where connections are accepted, a peer that connected and sent
    nothing (a half-open probe) held every later association back for as long as
    its handshake was given. At most ``maximum_associations`` handshakes are under
    way at once: a connection beyond them is closed at once rather than given a
    thread of its own, so a flood of silent connections cannot take a thread each.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handshakes = threading.BoundedSemaphore(max(1, int(self.ae.maximum_associations)))

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None and not self._handshakes.acquire(blocking=False):
            log.warning("connection from %s:%s closed: %d TLS handshakes already under way",
                        client_address[0], client_address[1], self.ae.maximum_associations)
            request.close()
            self.connection_lost()
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            served = handshaken(self, request, client_address)
        finally:
            if self.ssl_context is not None:
                self._handshakes.release()
        if served is None:
            self.connection_lost()
            return
        super().process_request_thread(served, client_address)

    def connection_lost(self) -> None:
        """A connection closed before its association could start (its TLS handshake failed)."""


class PlainAcceptServer(HandshakingServer):
    """Accepts connections as they come; TLS is negotiated where each is served.

    pynetdicom wraps the socket in ``get_request``, where socketserver drops an
    ``OSError`` without a word: a peer without a client certificate, or a plain
    TCP one, left no trace at the node.
    """

    def get_request(self) -> tuple[socket.socket, Address]:
        connection, address = cast(socket.socket, self.socket).accept()
        return connection, address


class _DispatchingServer(PlainAcceptServer):
    def __init__(self, *args: Any, handoff: Handoff, **kwargs: Any) -> None:
        self.handoff = handoff
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        board = self.handoff.board
        slot = board.take_least_busy()
        if slot != 0:
            if self.handoff.send(slot, request, client_address):
                request.close()  # the other process holds its own descriptor now
                return
            board.release(slot)
            board.take(0)
        serve_here(self, request, client_address)

    def connection_lost(self) -> None:
        # its count comes off here: EVT_CONN_CLOSE (releasing) only fires for an association
        self.handoff.board.release(0)


def handshaken(server: ThreadedAssociationServer, connection: socket.socket,
               address: Address) -> socket.socket | None:
    """``connection`` after its TLS handshake (as it is without TLS); None when the handshake
    failed, which is logged and the connection closed.

    The handshake gets ``acse_timeout`` seconds, as a peer slow to request an
    association does.
    """
    if server.ssl_context is None:
        return connection
    before = connection.gettimeout()
    connection.settimeout(server.ae.acse_timeout)
    try:
        wrapped = server.ssl_context.wrap_socket(connection, server_side=True)
    except OSError as exc:  # a failed or timed-out TLS handshake, a peer gone: that connection only
        log.warning("connection from %s:%s failed before its association: %s", address[0], address[1], exc)
        connection.close()
        return None
    wrapped.settimeout(before)
    return wrapped


def serve_here(server: HandshakingServer, connection: socket.socket, address: Address) -> None:
    """Serve ``connection`` in this process, in a thread of its own (its TLS handshake first).

    Its count on the board comes off when it closes (:func:`releasing`), or in
    the server's ``connection_lost`` if it fails before an association could start.
    """
    HandshakingServer.process_request(server, connection, address)


@dataclass(frozen=True)
class HandedSource:
    """Another receiver process's side: its pipe from the listening process and its slot on the board.

    ``gone`` is set once the pipe closes: the listening process has stopped or died.
    """

    pipe: Connection
    board: LoadBoard
    slot: int
    gone: threading.Event


class _HandedServer(HandshakingServer):
    """Serves connections handed over by the listening process; binds no port and runs no accept loop."""

    def __init__(self, *args: Any, handed: HandedSource, **kwargs: Any) -> None:
        self.handed = handed
        super().__init__(*args, **kwargs)

    def connection_lost(self) -> None:
        self.handed.board.release(self.handed.slot)

    def server_bind(self) -> None:
        pass

    def server_activate(self) -> None:
        pass

    def shutdown(self) -> None:
        self.server_close()


class DispatchingAE(AE):
    """The listening process's AE: accepts, then serves or hands over each connection."""

    def __init__(self, *args: Any, handoff: Handoff, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handoff = handoff

    def make_server(self, *args: Any, **kwargs: Any) -> ThreadedAssociationServer:
        # start_server always asks for its own server class; this one replaces it
        return super().make_server(*args, **{**kwargs, "server_class": _DispatchingServer,
                                             "handoff": self._handoff})


class HandedAE(AE):
    """Another receiver process's AE: its server only serves handed connections."""

    def __init__(self, *args: Any, handed: HandedSource, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed = handed

    def make_server(self, *args: Any, **kwargs: Any) -> ThreadedAssociationServer:
        return super().make_server(*args, **{**kwargs, "server_class": _HandedServer, "handed": self._handed})


def receive_handoffs(server: HandshakingServer, source: HandedSource) -> None:
    """Serve each connection handed over ``source.pipe`` until it closes; then set ``source.gone``.

    The pipe closes when the listening process is gone: this process must not
    outlive it.
    """
    try:
        while True:
            address = cast(Address, source.pipe.recv())
            serve_here(server, socket.socket(fileno=recv_handle(source.pipe)), address)
    except (EOFError, OSError):
        log.info("the listening process is gone; stopping")
    finally:
        source.gone.set()


def releasing(board: LoadBoard, slot: int) -> tuple[evt.EventType, Callable[[Event], None]]:
    """The ``EVT_CONN_CLOSE`` handler that counts a served connection off ``slot``."""

    def on_close(event: Event) -> None:
        board.release(slot)

    return evt.EVT_CONN_CLOSE, on_close
