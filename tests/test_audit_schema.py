from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

import node.db.audit  # noqa: F401  (its tables are part of the metadata compared)
from node.db.models import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_audit_views_exist(engine: Engine) -> None:
    assert {"v_current_results", "v_suspicious_studies_this_week", "v_failed_deliveries", "v_study_history",
            "v_studies_not_analysed", "v_studies_not_delivered", "v_study_timings"} <= set(
        inspect(engine).get_view_names())
