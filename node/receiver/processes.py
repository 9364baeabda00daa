"""The node's extra receiver processes (``dicom.receiver_processes`` > 1).

One Python process runs about one core's worth of DICOM networking (the GIL),
so concurrent associations get more cores from more processes. The main
process listens and hands each connection to the least busy process (see
:mod:`node.receiver.handoff`). It keeps everything else to itself: the
database migration, the start-up sweep of association rows, completion,
retention, the workers and the metrics endpoint. An extra process only
receives: it writes instances and association rows like the main one,
through its own engine.

Each runs in a fresh interpreter (``spawn``: no threads or sockets inherited
from the parent), stops on SIGTERM with ``dicom.shutdown_grace``, and stops by
itself when its parent is gone (its pipe closes). One that dies is started
again (after a growing delay if it keeps dying young), and its open
association rows are closed as aborted.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as EventType
from typing import Any

from node.receiver.handoff import Handoff, LoadBoard
from node.settings import Settings

log = logging.getLogger(__name__)

# Run in the child with (settings, process name, log level, ready, its pipe, the board's
# counts, its slot, its end of a metrics pipe or None); it sets ``ready`` once it can serve.
ReceiverMain = Callable[
    [Settings, str, str, EventType, Connection, "SynchronizedArray[Any]", int, Connection | None], None]
# A new pipe for one process's metrics events; the returned end is the process's to send on.
MetricsPipe = Callable[[], Connection]
# Called with a dead child's process name, to close what it left open.
OnDeath = Callable[[str], object]

_KILL_WAIT = 5.0  # seconds after SIGKILL; a process cannot ignore it
_READY_TIMEOUT = 60.0  # seconds for a new process to import, connect and listen
# A process that ends within _STABLE seconds of its start is restarted after a delay that
# doubles from _FIRST_DELAY up to _MAX_DELAY: one that cannot start (its database gone,
# say) is retried without filling the log; one that ran a while is restarted at once.
_STABLE = 30.0
_FIRST_DELAY = 1.0
_MAX_DELAY = 60.0


class ReceiverProcessError(RuntimeError):
    """An extra receiver process did not start listening."""


@dataclass
class _Child:
    """The process serving one slot, and its restart bookkeeping."""

    name: str
    process: BaseProcess
    # referenced as long as its process: collected, its semaphore would be gone before
    # a child started a moment earlier could open it
    ready: EventType
    started_at: float
    delay: float = 0.0  # the last restart delay (0 after a process that ran _STABLE seconds)
    restart_at: float | None = None  # set once its death is seen


class ReceiverProcesses:
    """Starts ``count`` receiver-only processes, restarts dead ones, stops them."""

    def __init__(self, settings: Settings, count: int, *, name: str, main: ReceiverMain,
                 on_death: OnDeath, metrics_pipe: MetricsPipe | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not name:
            raise ValueError("name must not be empty")
        self._settings = settings
        self._count = count
        self._name = name
        self._main = main
        self._on_death = on_death
        self._metrics_pipe = metrics_pipe
        self._context = multiprocessing.get_context("spawn")
        self._counts = self._context.Array("i", count + 1)
        self.handoff = Handoff(LoadBoard(self._counts))
        self._children: dict[int, _Child] = {}
        self._started = 0
        self._clock = clock

    def start(self) -> None:
        """Start them all; return once each listens (so that no sender finds only some)."""
        pending = [self._spawn(slot) for slot in range(1, self._count + 1)]
        deadline = time.monotonic() + _READY_TIMEOUT
        for child in pending:
            while not child.ready.wait(0.1):
                if not child.process.is_alive() or time.monotonic() > deadline:
                    self.signal_stop()
                    self.join(0)
                    raise ReceiverProcessError(f"receiver process {child.name} did not start listening "
                                               f"(exit code {child.process.exitcode})")

    def restart_dead(self) -> int:
        """Start again every process that ended, once its restart delay is over; how many."""
        restarted = 0
        now = self._clock()
        for slot, child in list(self._children.items()):
            if child.process.is_alive():
                continue
            if child.restart_at is None:
                young = now - child.started_at < _STABLE
                child.delay = min(_MAX_DELAY, max(_FIRST_DELAY, 2 * child.delay)) if young else 0.0
                child.restart_at = now + child.delay
                log.error("receiver process %s (pid %s) ended with exit code %s; starting it again in %g s",
                          child.name, child.process.pid, child.process.exitcode, child.delay)
                self.handoff.detach(slot)
                self._on_death(child.name)
            if now >= child.restart_at:
                self._spawn(slot, delay=child.delay)
                restarted += 1
        return restarted

    def running(self) -> int:
        """How many of them are alive now."""
        return sum(1 for child in self._children.values() if child.process.is_alive())

    def signal_stop(self) -> None:
        """Ask every process to stop (SIGTERM): they stop accepting and drain their associations."""
        for child in self._children.values():
            if child.process.is_alive():
                child.process.terminate()

    def join(self, grace: float) -> None:
        """Wait ``grace`` seconds (and their own shutdown's margin) for them; kill what is left."""
        deadline = time.monotonic() + grace + _KILL_WAIT
        for child in self._children.values():
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                log.warning("receiver process %s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.join(_KILL_WAIT)
        for slot in self._children:
            self.handoff.detach(slot)
        self._children.clear()

    def _spawn(self, slot: int, delay: float = 0.0) -> _Child:
        """Start the process of ``slot``; ``delay`` is the restart delay it was started after."""
        self._started += 1
        name = f"{self._name}/r{slot}.{self._started}"
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        ready = self._context.Event()
        ours, theirs = self._context.Pipe()
        metrics = self._metrics_pipe() if self._metrics_pipe is not None else None
        process = self._context.Process(
            target=self._main, args=(self._settings, name, level, ready, theirs, self._counts, slot, metrics),
            name=f"receiver-{slot}", daemon=False)
        process.start()
        # the child's copies are its own; ours must not keep its ends open, or its death goes unseen
        theirs.close()
        if metrics is not None:
            metrics.close()
        self.handoff.attach(slot, ours, process.pid or 0)
        child = self._children[slot] = _Child(name, process, ready, self._clock(), delay)
        log.info("started receiver process %s (pid %s)", name, process.pid)
        return child

