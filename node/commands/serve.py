"""`lumbar-sentinel serve`: receive studies, queue and run their analysis.

SIGTERM or SIGINT stops the node: no new associations, open ones get
``dicom.shutdown_grace`` and are then aborted; running jobs get
``queue.shutdown_grace`` and are then released for another worker.
``--grace`` overrides both.
"""

from __future__ import annotations

import argparse
import logging
import threading

from node.app import run_node
from node.commands import grace_seconds
from node.commands.signals import stop_on_signals
from node.settings import Settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grace", type=grace_seconds, default=None,
                        help="seconds open associations and running jobs both get on SIGTERM "
                             "(default: dicom.shutdown_grace for associations, "
                             "queue.shutdown_grace for jobs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    association_grace = settings.dicom.shutdown_grace.total_seconds() if args.grace is None else args.grace
    job_grace = settings.queue.shutdown_grace.total_seconds() if args.grace is None else args.grace
    with stop_on_signals(threading.Event()) as stop:
        return run_node(settings, stop, association_grace=association_grace, job_grace=job_grace)
