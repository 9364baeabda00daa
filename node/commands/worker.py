"""`lumbar-sentinel worker`: run analysis workers (and the completion monitor) only.

For extra machines beside a `serve` node on the same PostgreSQL. Workers do
not migrate the database (`serve` or `db upgrade` does); they refuse to start
on a schema that is not current. SIGTERM or SIGINT stops them cleanly: no new
jobs are claimed, running ones get ``--grace`` seconds, the rest are released.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Mapping

from node.commands import grace_seconds
from node.commands.signals import stop_on_signals
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import schema_problem
from node.metrics import Telemetry
from node.queue.completion import CompletionMonitor
from node.queue.worker import FailureHook, JobHandler, WorkerPool, exit_process, process_name
from node.settings import Settings
from node.storage.files import probe_writable
from node.storage.root import store_problem

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-monitor", action="store_true",
                        help="do not run the completion monitor in this process")
    parser.add_argument("--grace", type=grace_seconds, default=None,
                        help="seconds running jobs get to finish on SIGTERM before release "
                             "(default: queue.shutdown_grace)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from node.tasks import build_failure_hooks, build_handlers

    grace = settings.queue.shutdown_grace.total_seconds() if args.grace is None else args.grace
    return run_workers(settings, build_handlers(settings), monitor=not args.no_monitor, grace=grace,
                       on_failure=build_failure_hooks())


def run_workers(
    settings: Settings,
    handlers: Mapping[str, JobHandler],
    *,
    monitor: bool,
    grace: float,
    on_failure: Mapping[str, FailureHook] | None = None,
    stop: threading.Event | None = None,
    started: threading.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); returns the exit status.

    ``started`` is set once the workers are claiming jobs.
    """
    if grace < 0:
        raise ValueError(f"grace must not be negative, got {grace}")
    if settings.queue.workers == 0 and not monitor:
        log.error("queue.workers is 0 and the monitor is off: nothing to run")
        return 2
    # Installed before anything slow, so a stop during start-up is clean too.
    with stop_on_signals(stop or threading.Event()) as stopping:
        return _run_until_stopped(settings, handlers, on_failure or {}, monitor, grace, stopping, started)


def _run_until_stopped(
    settings: Settings,
    handlers: Mapping[str, JobHandler],
    on_failure: Mapping[str, FailureHook],
    monitor: bool,
    grace: float,
    stopping: threading.Event,
    started: threading.Event | None,
) -> int:
    engine = create_db_engine(settings.database.url, echo=settings.database.echo)
    pool: WorkerPool | None = None
    try:
        problem = schema_problem(engine)
        if problem:
            log.error("%s", problem)
            return 2
        sessions = session_factory(engine)
        # the analysis reads the received files; the monitor alone does not
        problem = (store_problem(settings.storage.root, sessions, verify=settings.storage.verify_root)
                   if settings.queue.workers else None)
        if problem is not None:
            log.error("%s", problem)
            return 2
        if settings.queue.workers:
            try:
                probe_writable(settings.storage.results)
            except OSError as exc:
                log.error("cannot start: %s (storage.results must be a folder the worker can create and "
                          "write)", exc)
                return 2
        telemetry = Telemetry(settings, sessions)
        pool = WorkerPool(settings.queue, sessions, telemetry.jobs.timed(handlers), process_name(),
                          on_failure=on_failure)
        completion = CompletionMonitor(settings.study, settings.queue, sessions) if monitor else None
        telemetry.health.watch("workers", lambda: pool is not None and pool.died)
        if completion is not None:
            telemetry.health.watch("completion monitor", lambda: completion.died)
        try:
            telemetry.start()
        except OSError:
            return 1
        try:
            if completion is not None:
                completion.start()
            pool.start()
            log.info("worker ready: %d worker thread(s), completion monitor %s",
                     settings.queue.workers, "on" if completion else "off")
            if started is not None:
                started.set()
            while not stopping.wait(1.0):
                pass
        finally:
            if completion is not None:
                completion.stop()
            pool.stop(grace)
            telemetry.stop()
        log.info("worker stopped")
        status = 0
    finally:
        engine.dispose()
    return exit_process(status, pool)
