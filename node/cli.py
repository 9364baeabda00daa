"""`lumbar-sentinel`: the node's command line.

Each sub-command lives in its own module exposing ``configure(parser)``, which
adds its arguments and sets ``handler`` to a ``(args, settings) -> int`` function;
its name and help line are in ``node.commands.COMMANDS``, the one place they are kept.
Only the chosen command's module is imported (see ``node.commands``).
Settings are loaded once here, only for the commands that need them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from node.commands import COMMANDS
from node.commands.admin import DatabaseUnusable
from node.logs import configure_logging
from node.settings import ConfigError, Settings, load_settings

log = logging.getLogger("lumbar_sentinel")

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # as logging.level allows
DATABASE_UNUSABLE = 2  # as for a bad setting: the database is not there, not reachable or not migrated


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option left out adds no attribute, so one given before the
    # sub-command is not overwritten by the sub-command's default.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML settings file (default: config/node.toml)")
    parser.add_argument("--log-level", type=_log_level, default=argparse.SUPPRESS,
                        help="override logging.level (DEBUG, INFO, WARNING or ERROR)")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(_LOG_LEVELS)}: {value!r}")
    return level


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported and adds its full sub-parser.

    The others stay placeholders carrying their help line, which is all that
    ``--help`` and the dispatch on the command's name need. ``--config`` and
    ``--log-level`` go before or after the sub-command.
    """
    parser = argparse.ArgumentParser(
        prog="lumbar-sentinel",
        description="DICOM node flagging MRI signs of spinal malignancy (a triage aid, not a diagnosis).",
    )
    _add_common_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        if name == command:
            chosen = sub.add_parser(name, help=entry.help)
            entry.load().configure(chosen)
            _add_common_options(chosen)
        else:
            sub.add_parser(name, help=entry.help, add_help=False)
    return parser


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` in two passes: find the command, then parse with its full sub-parser."""
    chosen, _ = build_parser().parse_known_args(list(argv))
    return build_parser(chosen.command).parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        settings: Settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"lumbar-sentinel: {exc}", file=sys.stderr)
        return 2
    configure_logging(getattr(args, "log_level", None) or settings.logging.level)
    try:
        result: int = args.handler(args, settings)
    except DatabaseUnusable as exc:
        print(f"lumbar-sentinel {args.command}: {exc}", file=sys.stderr)
        return DATABASE_UNUSABLE
    return result


if __name__ == "__main__":
    raise SystemExit(main())
