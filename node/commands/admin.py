"""What the admin commands share: ``--format``, the database session, and printing rows.

Rows are plain dicts; ``table`` prints them with rich on a terminal, ``csv``
and ``json`` for scripts (JSON: one list, or an object of lists for commands
that print several sections). Heavy imports stay inside functions so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from node.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

FORMATS = ("table", "csv", "json")
Row = Mapping[str, Any]


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default, for a terminal), csv or json")


class DatabaseUnusable(Exception):
    """The node's database cannot answer: not there, not reachable, or without this version's schema."""


@contextmanager
def admin_engine(settings: Settings) -> Iterator[Engine]:
    """The engine for one admin command; a database that cannot answer raises :class:`DatabaseUnusable`.

    A SQLite file that is not there is not created: a read command on a wrong
    ``database.url`` would otherwise leave an empty database behind.
    """
    # DatabaseError: OperationalError, ProgrammingError, and "file is not a database" (SQLite)
    from sqlalchemy.exc import DatabaseError

    from node.db.engine import create_db_engine
    from node.db.migrate import absent, schema_problem

    engine = create_db_engine(settings.database.url)
    problem = absent(engine)
    if problem is not None:
        engine.dispose()
        raise DatabaseUnusable(problem)
    try:
        yield engine
    except DatabaseError as exc:
        problem = schema_problem(engine)
        if problem is None:  # the schema is this version's: the error is not the database's set-up
            raise
        raise DatabaseUnusable(problem) from exc
    finally:
        engine.dispose()


@contextmanager
def read_session(settings: Settings) -> Iterator[Session]:
    """A session on the node's database, for one command."""
    from node.db.engine import session_factory

    with admin_engine(settings) as engine, session_factory(engine)() as session:
        yield session


@contextmanager
def write_session(settings: Settings) -> Iterator[Session]:
    """A session whose transaction commits when the block ends without error."""
    from node.db.engine import session_factory

    with admin_engine(settings) as engine, session_factory(engine).begin() as session:
        yield session


def since(value: str) -> datetime:
    """``--since``: an ISO date or time (UTC unless it says otherwise) or a duration ago ("7d", "12h")."""
    units = {"d": 86400, "h": 3600, "m": 60}
    text = value.strip()
    if text[-1:] in units and text[:-1].isdigit():
        try:
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        except OverflowError as exc:  # argparse turns only ValueError and TypeError into a usage error
            raise argparse.ArgumentTypeError(f"too far back (before the year 1): {value!r}") from exc
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date, time or duration like 7d: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def plain(value: Any) -> Any:
    """A value JSON and CSV can carry."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def emit(sections: Mapping[str, Sequence[Row]], fmt: str, *, single: bool = False,
         out: TextIO | None = None) -> None:
    """Print ``sections`` in ``fmt``; ``single`` prints the one section's rows without a title."""
    out = out or sys.stdout
    if fmt == "json":
        data: Any = {name: [{k: plain(v) for k, v in row.items()} for row in rows]
                     for name, rows in sections.items()}
        if single:
            (data,) = data.values()
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        for name, rows in sections.items():
            if not single:
                out.write(f"# {name}\n")
            if rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows({k: plain(v) for k, v in row.items()} for row in rows)
        return
    from rich.console import Console
    from rich.table import Table

    # Piped into a file, less or grep, a table as wide as its content keeps each UID on one
    # line; rich would otherwise fold it to 80 columns.
    console = Console(file=out, soft_wrap=False, width=None if out.isatty() else 100_000)
    for name, rows in sections.items():
        if not rows:
            console.print(f"[dim]{name}: none[/]")
            continue
        table = Table(title=None if single else name, title_justify="left", show_lines=False)
        for column in rows[0]:
            table.add_column(column.replace("_", " "), overflow="fold")
        for row in rows:
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)
