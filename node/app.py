"""The node `serve` runs: one engine, the receiver, the completion monitor and the workers.

Everything is built here from the settings and handed its dependencies;
nothing reads configuration or holds state at module level.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from node.db import create_db_engine, session_factory, upgrade
from node.queue.completion import CompletionMonitor
from node.queue.worker import WorkerPool, process_name
from node.receiver import AssociationLog, AssociationTracker, CallerPolicy, Receiver, StoreHandler
from node.settings import Settings
from node.storage import InstanceCatalog, InstanceStore

log = logging.getLogger(__name__)


class Node:
    """The running parts of a node, wired to one engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        sessions = session_factory(engine)
        self.store = InstanceStore(
            settings.storage.root,
            min_free_bytes=settings.storage.min_free_bytes,
            max_instance_bytes=settings.dicom.max_instance_bytes,
        )
        tracker = AssociationTracker(
            CallerPolicy(settings.dicom.allowed_callers),
            AssociationLog(sessions, tls=settings.tls.enabled),
        )
        self.receiver = Receiver(
            settings.dicom, settings.tls,
            StoreHandler(self.store, InstanceCatalog(sessions), tracker),
            tracker,
        )
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
        try:
            # A timed wait keeps the main thread responsive to signal handlers.
            while not stop.wait(1.0):
                pass
        finally:
            node.stop(grace)
        log.info("stopped")
        return 0
    finally:
        engine.dispose()
