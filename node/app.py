"""The node `serve` runs: one engine, the receiver, the completion monitor and the workers.

Everything is built here from the settings and handed its dependencies;
nothing reads configuration or holds state at module level.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.synchronize import Event as ProcessEvent

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from node.db import create_db_engine, session_factory, upgrade
from node.queue.completion import CompletionMonitor
from node.queue.worker import WorkerPool, process_name
from node.receiver import AssociationLog, AssociationTracker, CallerPolicy, Receiver, StoreHandler
from node.settings import Settings
from node.storage import InstanceCatalog, InstanceStore

log = logging.getLogger(__name__)


def build_receiver(settings: Settings, engine: Engine) -> tuple[InstanceStore, Receiver]:
    """The instance store and the receiver writing into it, on ``engine``."""
    sessions = session_factory(engine)
    store = InstanceStore(
        settings.storage.root,
        min_free_bytes=settings.storage.min_free_bytes,
        max_instance_bytes=settings.dicom.max_instance_bytes,
    )
    tracker = AssociationTracker(
        CallerPolicy(settings.dicom.allowed_callers),
        AssociationLog(sessions, tls=settings.tls.enabled),
    )
    receiver = Receiver(
        settings.dicom, settings.tls,
        StoreHandler(store, InstanceCatalog(sessions), tracker),
        tracker, share_port=settings.dicom.receiver_processes > 1,
    )
    return store, receiver


class Node:
    """The running parts of a node, wired to one engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        sessions = session_factory(engine)
        self.store, self.receiver = build_receiver(settings, engine)
        self.monitor = CompletionMonitor(settings.study, settings.queue, sessions)
        self.workers: WorkerPool | None = None
        if settings.queue.workers:
            # the analysis (and PyTorch with it) is imported only by a node that runs it: a
            # receiver-only node (queue.workers = 0) starts without it
            from node.tasks import build_handlers

            self.workers = WorkerPool(settings.queue, sessions, build_handlers(settings), process_name())

    def start(self) -> None:
        # in the background: on a large archive the walk takes a while, and nothing waits for it
        threading.Thread(target=self._sweep_partial, name="partial-file sweep", daemon=True).start()
        self.receiver.start()
        self.monitor.start()
        if self.workers is not None:
            self.workers.start()
        host, port = self.receiver.address
        log.info("storing under %s; database %s", self.store.root,
                 make_url(self.settings.database.url).render_as_string(hide_password=True))
        log.info("listening on %s:%d as %s%s", host, port, self.settings.dicom.ae_title,
                 " (TLS)" if self.settings.tls.enabled else "")

    def _sweep_partial(self) -> None:
        try:
            self.store.sweep_partial(self.settings.storage.partial_file_max_age)
        except OSError:
            log.exception("could not sweep interrupted receives under %s", self.store.root)

    def stop(self, grace: float) -> None:
        """Stop accepting; associations and jobs get ``grace`` seconds, then are aborted or released."""
        log.info("stopping: open associations and running jobs get %g s", grace)
        self.receiver.stop(grace)
        self.monitor.stop()
        if self.workers is not None:
            self.workers.stop(grace)


def run_node(settings: Settings, stop: threading.Event, *, grace: float) -> int:
    """Migrate, start the node, run until ``stop`` is set, shut down; the exit status."""
    if grace < 0:
        raise ValueError(f"grace must not be negative, got {grace}")
    engine = create_db_engine(settings.database.url, echo=settings.database.echo)
    try:
        upgrade(engine)
        node = Node(settings, engine)
        try:
            node.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", settings.dicom.host, settings.dicom.port, exc)
            node.stop(0)
            return 1
        extra = _start_receiver_processes(settings, grace)
        try:
            # A timed wait keeps the main thread responsive to signal handlers.
            while not stop.wait(1.0):
                pass
        finally:
            extra.stop.set()
            node.stop(grace)
            for process in extra.processes:
                process.join(grace + 10.0)
        log.info("stopped")
        return 0
    finally:
        engine.dispose()


class _ReceiverProcesses:
    def __init__(self, stop: ProcessEvent, processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
        self.stop = stop
        self.processes = processes


def _start_receiver_processes(settings: Settings, grace: float) -> _ReceiverProcesses:
    """``dicom.receiver_processes - 1`` more receivers on this node's port (spawned, not forked)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    processes = [
        context.Process(target=run_receiver, args=(settings, stop, grace, os.getpid(),
                                                   logging.getLogger().level),
                        name=f"receiver {i + 2}", daemon=True)
        for i in range(settings.dicom.receiver_processes - 1)
    ]
    for process in processes:
        process.start()
    return _ReceiverProcesses(stop, processes)


def run_receiver(settings: Settings, stop: ProcessEvent, grace: float, parent: int, log_level: int) -> None:
    """One more receiver process: receives until ``stop`` is set or its parent is gone."""
    # the parent's SIGTERM/SIGINT stop it through ``stop``; a signal sent to the whole group
    # must not cut its associations short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = create_db_engine(settings.database.url, echo=settings.database.echo)
    try:
        _, receiver = build_receiver(settings, engine)
        receiver.start()
        log.info("receiver process %d listening on %s:%d", os.getpid(), *receiver.address)
        while not stop.wait(1.0) and os.getppid() == parent:
            pass
        receiver.stop(grace)
    finally:
        engine.dispose()
