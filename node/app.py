"""The node `serve` runs: one engine, the receiver, the completion monitor and the workers.

Everything is built here from the settings and handed its dependencies;
nothing reads configuration or holds state at module level.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as EventType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from node.commands.signals import stop_on_signals
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import unreachable, upgrade
from node.logs import configure_logging
from node.metrics import Telemetry
from node.metrics.receiving import ReceptionEvents
from node.metrics.relay import MetricsRelay, RelayedMetrics
from node.periodic import Periodic
from node.queue.completion import CompletionMonitor
from node.queue.worker import WorkerPool, exit_process, process_name
from node.receiver import AssociationLog, AssociationTracker, CallerPolicy, Receiver, StoreHandler
from node.receiver.associations import NodeIdentity
from node.receiver.handoff import HandedSource, Handoff, LoadBoard
from node.receiver.processes import ReceiverProcessError, ReceiverProcesses
from node.settings import Settings
from node.storage import InstanceCatalog, InstanceStore
from node.storage.files import probe_writable
from node.storage.retention import Retention, RetentionMonitor
from node.storage.root import store_problem
from node.tls import server_context

log = logging.getLogger(__name__)


class MetricsUnavailable(RuntimeError):
    """The /metrics and /healthz endpoint could not listen (the metrics server logged where and why)."""


class Node:
    """The running parts of a node, wired to one engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        sessions = session_factory(engine)
        self.telemetry = Telemetry(settings, sessions)
        name = process_name()
        extra_receivers = settings.dicom.receiver_processes - 1
        # the extra receivers' counts reach /metrics through the main process
        self.relay = MetricsRelay(self.telemetry.receiver) if (
            extra_receivers and settings.metrics.enabled) else None
        self.extra_receivers = ReceiverProcesses(
            settings, extra_receivers, name=name, main=run_receiver_process,
            on_death=lambda process: self.associations.sweep(process),
            metrics_pipe=self.relay.connection if self.relay is not None else None,
        ) if extra_receivers else None
        self.store, self.associations, self.receiver = _receiving(
            settings, engine, name, self.telemetry.receiver,
            handoff=self.extra_receivers.handoff if self.extra_receivers is not None else None)
        self.monitor = CompletionMonitor(settings.study, settings.queue, sessions)
        # At start-up, and again every max age: a receive cut off later (a peer gone, an
        # extra receiver process killed) leaves its staged file too, which would stay until
        # the next restart.
        self.sweeper = Periodic("partial-file sweep", self._sweep_partial,
                                settings.storage.partial_file_max_age, (OSError,))
        retention = settings.storage.retention
        self.retention = RetentionMonitor(
            Retention(retention, settings.storage.root, sessions), retention.interval
        ) if retention.enabled else None
        self.workers: WorkerPool | None = None
        if settings.queue.workers:
            # the analysis (and PyTorch with it) is imported only by a node that runs it: a
            # receiver-only node (queue.workers = 0) starts without it
            from node.tasks import build_failure_hooks, build_handlers

            handlers = self.telemetry.jobs.timed(build_handlers(settings))
            self.workers = WorkerPool(settings.queue, sessions, handlers, name,
                                      on_failure=build_failure_hooks())
        self._watch()

    def _watch(self) -> None:
        health = self.telemetry.health
        health.watch("completion monitor", lambda: self.monitor.died)
        health.watch("partial-file sweep", lambda: self.sweeper.died)
        if self.retention is not None:
            retention = self.retention
            health.watch("retention", lambda: retention.died)
        if self.workers is not None:
            workers = self.workers
            health.watch("workers", lambda: workers.died)

    def start(self) -> None:
        try:
            self.telemetry.start()
        except OSError as exc:  # the metrics port, whose line is logged: not the DICOM port
            raise MetricsUnavailable(str(exc)) from exc
        # in the background: on a large archive the walk takes a while, and nothing waits for it
        self.sweeper.start()
        self.receiver.start()
        # Once the port is ours, before completion runs: a row a crash left open would hold its studies.
        # Before the extra receivers start: their rows are not the previous process's.
        self.associations.sweep()
        if self.relay is not None:
            self.relay.start()
        if self.extra_receivers is not None:
            self.extra_receivers.start()
        self.monitor.start()
        if self.retention is not None:
            self.retention.start()
        if self.workers is not None:
            self.workers.start()
        host, port = self.receiver.address
        log.info("storing under %s; database %s", self.store.root,
                 make_url(self.settings.database.url).render_as_string(hide_password=True))
        log.info("listening on %s:%d as %s%s", host, port, self.settings.dicom.ae_title,
                 " (TLS)" if self.settings.tls.enabled else "")

    def _sweep_partial(self) -> None:
        self.store.sweep_partial(self.settings.storage.partial_file_max_age)

    def supervise(self) -> None:
        """Called about once a second while running: restart receiver processes that died."""
        if self.extra_receivers is not None:
            self.extra_receivers.restart_dead()

    def stop(self, association_grace: float, job_grace: float) -> None:
        """Stop accepting; associations and jobs get their grace seconds, then are aborted or released."""
        log.info("stopping: open associations get %g s, running jobs %g s", association_grace, job_grace)
        if self.extra_receivers is not None:
            self.receiver.stop_accepting()  # nothing more is handed to the processes stopping now
            self.extra_receivers.signal_stop()
        self.receiver.stop(association_grace)
        if self.extra_receivers is not None:
            self.extra_receivers.join(association_grace)
        self.monitor.stop()
        self.sweeper.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.workers is not None:
            self.workers.stop(job_grace)
        if self.relay is not None:
            self.relay.stop()
        self.telemetry.stop()


def run_node(settings: Settings, stop: threading.Event, *, association_grace: float, job_grace: float) -> int:
    """Migrate, start the node, run until ``stop`` is set, shut down; the exit status.

    A job handler that did not return after its job was released ends the
    process here (see :func:`node.queue.worker.exit_process`).
    """
    if association_grace < 0 or job_grace < 0:
        raise ValueError(f"graces must not be negative, got {association_grace} and {job_grace}")
    engine = create_db_engine(settings.database.url, echo=settings.database.echo)
    node: Node | None = None
    try:
        problem = unreachable(engine)
        if problem is not None:
            log.error("%s", problem)
            return 2
        try:
            if settings.tls.enabled:
                server_context(settings.tls)  # a missing certificate is said now, not as "cannot listen"
        except ValueError as exc:
            log.error("cannot start: %s", exc)
            return 2
        try:
            node = Node(settings, engine)
            # found only when the first analysis failed to write its results, for good
            probe_writable(settings.storage.results)
        except OSError as exc:  # the storage or results folder cannot be created or written
            log.error("cannot start: %s (storage.root and storage.results must be folders the node can "
                      "create and write)", exc)
            return 2
        # Only a node that can start changes the database's schema. The store is checked
        # against the upgraded schema's rows; a refusal there leaves the upgrade (it loses nothing).
        upgrade(engine)
        problem = store_problem(settings.storage.root, session_factory(engine),
                                verify=settings.storage.verify_root)
        if problem is not None:
            log.error("%s", problem)
            return 2
        try:
            node.start()
        except ReceiverProcessError as exc:
            log.error("%s", exc)
            node.stop(0, 0)
            return 1
        except MetricsUnavailable:
            node.stop(0, 0)
            return 1
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", settings.dicom.host, settings.dicom.port, exc)
            node.stop(0, 0)
            return 1
        try:
            # A timed wait keeps the main thread responsive to signal handlers.
            while not stop.wait(1.0):
                node.supervise()
        finally:
            node.stop(association_grace, job_grace)
        log.info("stopped")
        status = 0
    finally:
        engine.dispose()
    return exit_process(status, node.workers if node is not None else None)


def _receiving(settings: Settings, engine: Engine, name: str,
               metrics: ReceptionEvents | None, *, handoff: Handoff | None = None,
               handed: HandedSource | None = None) -> tuple[InstanceStore, AssociationLog, Receiver]:
    """The receiving side of a process named ``name``: its store, association log and receiver."""
    dicom = settings.dicom
    sessions = session_factory(engine)
    store = InstanceStore(settings.storage.root, min_free_bytes=settings.storage.min_free_bytes,
                          max_instance_bytes=dicom.max_instance_bytes)
    associations = AssociationLog(sessions, tls=settings.tls.enabled,
                                  node=NodeIdentity.of(name, dicom.ae_title, dicom.host, dicom.port))
    tracker = AssociationTracker(CallerPolicy(dicom.allowed_callers), associations, metrics)
    handler = StoreHandler(store, InstanceCatalog(engine), tracker, metrics)
    receiver = Receiver(dicom, settings.tls, handler, tracker, store.incoming, handoff=handoff, handed=handed)
    return store, associations, receiver


def run_receiver_process(settings: Settings, name: str, log_level: str, ready: EventType, pipe: Connection,
                         counts: SynchronizedArray[Any], slot: int, metrics: Connection | None) -> None:
    """An extra receiver process's main (see :mod:`node.receiver.processes`).

    Its receptions are counted by the main process, which serves the metrics
    endpoint: ``metrics`` is the pipe they are relayed on (None without metrics).
    """
    configure_logging(log_level)
    engine = create_db_engine(settings.database.url, echo=settings.database.echo)
    try:
        with stop_on_signals(threading.Event()) as stop:
            handed = HandedSource(pipe, LoadBoard(counts), slot, gone=stop)
            relayed = RelayedMetrics(metrics) if metrics is not None else None
            _, _, receiver = _receiving(settings, engine, name, relayed, handed=handed)
            receiver.start()
            ready.set()
            while not stop.wait(1.0):
                pass
            receiver.stop(settings.dicom.shutdown_grace.total_seconds())
    finally:
        engine.dispose()
