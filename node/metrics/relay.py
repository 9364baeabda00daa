"""Reception counts of the extra receiver processes, counted in the main process.

Only the main process serves ``/metrics``. An extra receiver process
(``dicom.receiver_processes`` > 1) counts through :class:`RelayedMetrics`,
which sends each event over its own pipe; :class:`MetricsRelay` in the main
process reads every pipe and applies the events to the node's
:class:`~node.metrics.receiving.ReceiverMetrics`, so the endpoint shows the
whole node. A pipe per process, not one shared queue: a process killed
while writing cannot leave a lock held for the others. When a pipe closes
(its process ended, or was killed), the associations it left open are
counted as aborted.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection, wait

from node.metrics.receiving import ReceiverMetrics
from node.storage import RecordOutcome

log = logging.getLogger(__name__)

_POLL = 0.5  # seconds between looks for pipes added since the last wait


class RelayedMetrics:
    """A receiver process's counters, sent to the main process (the ``ReceptionEvents`` of the child)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # associations run on threads of their own; a message must go out whole
        self._lock = threading.Lock()

    def instance_received(self, outcome: RecordOutcome) -> None:
        self._send("instance_received", outcome.value)

    def instance_rejected(self, status: int) -> None:
        self._send("instance_rejected", status)

    def association_accepted(self) -> None:
        self._send("association_accepted", None)

    def association_rejected(self) -> None:
        self._send("association_rejected", None)

    def association_ended(self, result: str) -> None:
        self._send("association_ended", result)

    def _send(self, event: str, argument: str | int | None) -> None:
        try:
            with self._lock:
                self._connection.send((event, argument))
        except OSError:
            # the main process is gone, and this process stops with it (its handoff pipe closes)
            log.debug("metrics event %s not relayed: the main process is gone", event)


class MetricsRelay:
    """Applies what the receiver processes send to ``metrics``, on a thread of its own."""

    def __init__(self, metrics: ReceiverMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._open: dict[Connection, int] = {}  # per pipe: associations accepted and not yet ended
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics relay", daemon=True)

    def connection(self) -> Connection:
        """A new pipe; the returned end is for one receiver process to send on."""
        ours, theirs = multiprocessing.Pipe(duplex=False)
        with self._lock:
            self._open[ours] = 0
        return theirs

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                pipes = list(self._open)
            if not pipes:
                self._stopping.wait(_POLL)
                continue
            for pipe in wait(pipes, timeout=_POLL):
                assert isinstance(pipe, Connection)
                self._drain(pipe)

    def _drain(self, pipe: Connection) -> None:
        try:
            while pipe.poll():
                event, argument = pipe.recv()
                self._apply(pipe, event, argument)
        except (EOFError, OSError):
            self._closed(pipe)

    def _apply(self, pipe: Connection, event: str, argument: str | int | None) -> None:
        if event == "instance_received" and isinstance(argument, str):
            self._metrics.instance_received(RecordOutcome(argument))
        elif event == "instance_rejected" and isinstance(argument, int):
            self._metrics.instance_rejected(argument)
        elif event == "association_accepted":
            self._count_open(pipe, 1)
            self._metrics.association_accepted()
        elif event == "association_rejected":
            self._metrics.association_rejected()
        elif event == "association_ended" and isinstance(argument, str):
            self._count_open(pipe, -1)
            self._metrics.association_ended(argument)
        else:
            log.error("unknown metrics event from a receiver process: %r %r; ignored", event, argument)

    def _count_open(self, pipe: Connection, change: int) -> None:
        with self._lock:
            self._open[pipe] += change

    def _closed(self, pipe: Connection) -> None:
        with self._lock:
            left_open = self._open.pop(pipe)
        pipe.close()
        for _ in range(left_open):
            self._metrics.association_ended("aborted")
