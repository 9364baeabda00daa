from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from node.db.engine import create_db_engine, session_factory
from node.db.migrate import alembic_config, current_revision, head_revision, upgrade
from node.db.models import Study
from tests.helpers.databases import module_database


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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_analysis_recorded_before_0003_gets_its_findings_rows_on_upgrade(
        backend: str, tmp_path: Path) -> None:
    """The views and the admin commands read those rows: an upgraded node keeps its earlier answers."""
    level = {"level": "L3", "marrow_infiltration": "present", "cortical_destruction": "absent",
             "soft_tissue_extension": "absent", "compression_fracture": "absent",
             "pathologic_fracture_pattern": "absent", "suspicious_for_malignancy": "present",
             "genant_grade": 0}
    study = {"suspicious_for_malignancy": "present", "multiple_lesions": "absent",
             "canal_compromise": "absent", "suspicious_level_count": 1,
             "impression": "Suspicious for malignancy at L3."}
    with module_database(backend, tmp_path) as url:
        engine = create_db_engine(url)
        try:
            upgrade(engine, "0002")
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO studies (id, study_instance_uid, first_received_at, "
                                  "last_received_at, status, content_version) "
                                  "VALUES (1, '1.2.3', :t, :t, 'analysed', 1)"),
                             {"t": datetime(2026, 1, 2, tzinfo=UTC)})
                for result_id, findings in ((1, {"study": study, "levels": [level]}), (2, {"levels": []})):
                    conn.execute(text("INSERT INTO analysis_results (id, study_id, created_at, outcome, "
                                      "algorithm_version, findings, content_version) "
                                      "VALUES (:id, 1, :t, 'analysed', '0.3.0', :f, 1)"),
                                 {"id": result_id, "t": datetime(2026, 1, 2, tzinfo=UTC),
                                  "f": json.dumps(findings)})
            upgrade(engine)
            with engine.connect() as conn:
                summaries = conn.execute(text("SELECT analysis_result_id, suspicious_for_malignancy, "
                                              "suspicious_level_count FROM result_summaries")).all()
                levels = conn.execute(text("SELECT analysis_result_id, level, marrow_infiltration, "
                                           "genant_grade, ha_mm FROM level_findings")).all()
        finally:
            engine.dispose()
    assert [tuple(r) for r in summaries] == [(1, "present", 1)]  # the one without a summary is left as it is
    assert [tuple(r) for r in levels] == [(1, "L3", "present", 0, None)]
