"""`lumbar-sentinel db upgrade|current`: the database schema."""

from __future__ import annotations

import argparse
import sys

from node.db.engine import create_db_engine
from node.db.migrate import absent, current_revision, unreachable, upgrade
from node.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "current"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_db_engine(settings.database.url)
    try:
        # Only upgrade creates a database: `current` on a wrong URL must not leave an empty one.
        problem = (absent(engine) if args.action == "current" else None) or unreachable(engine)
        if problem is not None:
            print(f"lumbar-sentinel db: {problem}", file=sys.stderr)
            return 2
        if args.action == "upgrade":
            upgrade(engine)
        print(current_revision(engine) or "(empty database)")
    finally:
        engine.dispose()
    return 0
