from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, inspect, select

from node.db import session_factory
from node.db.migrate import current_revision
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
    assert current_revision(engine) == "0002"


def test_datetimes_come_back_in_utc(engine: Engine) -> None:
    sessions = session_factory(engine)
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with sessions.begin() as session:
        session.add(Study(study_instance_uid="1.2.3", first_received_at=stamp, last_received_at=stamp))
    with sessions() as session:
        study = session.scalars(select(Study)).one()
        assert study.last_received_at == stamp
        assert study.last_received_at.tzinfo is not None
