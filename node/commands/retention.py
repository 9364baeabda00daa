"""`lumbar-sentinel retention`: delete received images whose results were delivered long enough ago.

Runs the ``storage.retention`` policy once (``serve`` runs it every
``storage.retention.interval`` when enabled); ``--dry-run`` lists without deleting.
"""

from __future__ import annotations

import argparse
import sys

from node.commands.admin import add_format, admin_engine, emit
from node.settings import Settings

DISABLED = 2
NO_STORAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument("--force", action="store_true", help="run even if storage.retention.enabled is false")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not (settings.storage.retention.enabled or args.force or args.dry_run):
        print("retention: storage.retention.enabled is false (use --force to run it anyway)")
        return DISABLED
    from dataclasses import asdict

    from node.db.engine import session_factory
    from node.storage.retention import Retention

    with admin_engine(settings) as engine:
        retention = Retention(settings.storage.retention, settings.storage.root, session_factory(engine))
        try:
            deleted = retention.run_once(dry_run=args.dry_run)
        except FileNotFoundError as exc:
            print(f"retention: {exc}", file=sys.stderr)
            return NO_STORAGE
    emit({"retention": [asdict(d) for d in deleted]}, args.format, single=True)
    return 0
