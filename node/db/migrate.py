"""Alembic migrations, applied at start-up or by `lumbar-sentinel db upgrade`.

Alembic is imported only by the functions that migrate or read the scripts;
reading the database's revision needs SQLAlchemy alone, which keeps `db current`
and the workers' schema check quick to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, column, inspect, select, table

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Alembic's own bookkeeping table (alembic.runtime.migration's default name).
_VERSION_TABLE = table("alembic_version", column("version_num"))


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    """The newest revision among this code's migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, None for a database never migrated.

    Raises :class:`ValueError` if the version table holds several revisions
    (branches), which this project's linear migrations never create.
    """
    with engine.connect() as connection:
        if not inspect(connection).has_table(_VERSION_TABLE.name):
            return None
        rows = connection.execute(select(_VERSION_TABLE.c.version_num)).scalars().all()
    if len(rows) > 1:
        raise ValueError(f"alembic_version holds several revisions: {', '.join(map(str, rows))}")
    return str(rows[0]) if rows else None


def absent(engine: Engine) -> str | None:
    """Why there is no database: a SQLite file that is not there, which only `serve` and `db upgrade`
    create (connecting would create it, leaving an empty database behind a wrong ``database.url``)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
            or Path(url.database).exists():
        return None
    where = Path(url.database)
    # a relative path is taken from the working folder, which may not be the node's
    shown = str(where) if where.is_absolute() else f"{where} (in {Path.cwd()})"
    return (f"no database at {shown}: no node has run with this configuration "
            "(start `lumbar-sentinel serve` or run `lumbar-sentinel db upgrade`, or check database.url "
            "and --config)")


def unreachable(engine: Engine) -> str | None:
    """Why no connection to the database can be made (the URL shown without its password), or None."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        return f"cannot reach the database {shown}: {exc.orig}"
    except DatabaseError as exc:  # reached, but not a database: a SQLite URL naming some other file
        return f"cannot use the database {shown}: {exc.orig}"
    return None


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot use the database (not there, unreachable, no tables, another revision),
    or None."""
    problem = absent(engine) or unreachable(engine)
    if problem is not None:
        return problem
    shown = engine.url.render_as_string(hide_password=True)
    current = current_revision(engine)
    if current is None:
        return (f"the database {shown} holds no Lumbar Sentinel tables: start `lumbar-sentinel serve` "
                "once, or run `lumbar-sentinel db upgrade`")
    head = head_revision(engine)
    if current != head:
        return (f"the database {shown} is at schema revision {current}, this version needs {head}: "
                "run `lumbar-sentinel db upgrade`")
    return None
