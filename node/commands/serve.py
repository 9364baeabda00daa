"""`lumbar-sentinel serve`: receive studies, queue and run their analysis.

SIGTERM or SIGINT stops the node: no new associations, open ones get
``--grace`` seconds and are then aborted, running jobs likewise and are then
released for another worker.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from node.app import run_node
from node.commands.signals import stop_on_signals
from node.settings import Settings

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the DICOM receiver, completion monitor and workers")
    parser.add_argument("--grace", type=float, default=None,
                        help="seconds open associations and running jobs get on SIGTERM "
                             "(default: dicom.shutdown_grace)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    grace = settings.dicom.shutdown_grace.total_seconds() if args.grace is None else args.grace
    if grace < 0:
        log.error("--grace must not be negative, got %s", grace)
        return 2
    with stop_on_signals(threading.Event()) as stop:
        return run_node(settings, stop, grace=grace)
