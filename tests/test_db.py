from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from node.db.engine import session_factory
from node.db.migrate import alembic_config, current_revision, head_revision
from node.db.models import Study


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {
        "associations",
        "studies",
        "series",
        "instances",
        "jobs",
        "job_events",
        "analysis_results",
    } <= tables
    assert current_revision(engine) == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def test_datetimes_come_back_in_utc(engine: Engine) -> None:
    sessions = session_factory(engine)
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with sessions.begin() as session:
        session.add(Study(study_instance_uid="1.2.3", first_received_at=stamp, last_received_at=stamp))
    with sessions() as session:
        study = session.scalars(select(Study)).one()
        assert study.last_received_at == stamp
        assert study.last_received_at.tzinfo is not None


def test_current_revision_reads_what_alembic_reads(engine: Engine) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    def alembic_reads() -> str | None:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    assert current_revision(engine) == alembic_reads() is not None
    command.downgrade(alembic_config(engine), "-1")
    assert current_revision(engine) == alembic_reads() != head_revision(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('branch')"))
    with pytest.raises(ValueError, match="several revisions"):
        current_revision(engine)
