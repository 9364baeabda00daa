"""The database collector: the queue's claimable jobs, and the delivery part, read only when the
delivery tables exist.

The reading is tested on tables of its own (test names, just the columns the
collector reads, the status and outcome values of the results issue's
migration 0003), so it holds with or without that migration; a second test
checks :data:`DELIVERY_SCHEMA` against the migrated database when the
migration is there. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect, text

from node.db.engine import create_db_engine, session_factory
from node.metrics import DELIVERY_SCHEMA, DatabaseCollector, DeliverySchema
from node.queue.jobs import claim, enqueue

_TABLES = (
    "CREATE TABLE {s.deliveries} (id INTEGER PRIMARY KEY, {s.destination} VARCHAR(64), "
    "{s.status} VARCHAR(16))",
    "CREATE TABLE {s.attempts} (id INTEGER PRIMARY KEY, {s.attempt_delivery} INTEGER, "
    "{s.attempt_outcome} VARCHAR(16))",
    "CREATE TABLE {s.circuits} ({s.circuit_destination} VARCHAR(64), {s.circuit_state} VARCHAR(16))",
)
_ROWS = (
    "INSERT INTO {s.deliveries} VALUES (1, 'pacs', 'delivered'), (2, 'pacs', 'queued'), "
    "(3, 'viewer', 'dead')",
    "INSERT INTO {s.attempts} VALUES (1, 1, 'failed'), (2, 1, 'delivered'), (3, 3, 'failed'), "
    "(4, 3, 'failed')",
    "INSERT INTO {s.circuits} VALUES ('pacs', 'closed'), ('viewer', 'open')",
)


TEST_SCHEMA = replace(DELIVERY_SCHEMA, deliveries="t_deliveries", attempts="t_delivery_attempts",
                      circuits="t_destination_breakers")


def _collect(engine: Engine, schema: DeliverySchema = TEST_SCHEMA
             ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = DatabaseCollector(session_factory(engine), schema=schema)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect() for sample in family.samples}


def test_deliveries_and_circuits_are_read_when_their_tables_exist(engine: Engine) -> None:
    before = _collect(engine)
    assert before[("lsent_database_up", ())] == 1
    assert not any(name.startswith(("lsent_deliver", "lsent_circuit")) for name, _ in before)

    with engine.begin() as conn:
        for statement in (*_TABLES, *_ROWS):
            conn.execute(text(statement.format(s=TEST_SCHEMA)))
    after = _collect(engine)

    def sample(name: str, destination: str, label: str, value: str) -> float | None:
        return after.get((name, (("destination", destination), (label, value))))

    assert [sample("lsent_deliveries", *key) for key in
            (("pacs", "status", "delivered"), ("pacs", "status", "queued"), ("viewer", "status", "dead"))
            ] == [1, 1, 1]
    assert [sample("lsent_delivery_attempts_total", *key) for key in
            (("pacs", "outcome", "delivered"), ("pacs", "outcome", "failed"),
             ("viewer", "outcome", "failed"), ("viewer", "outcome", "delivered"))] == [1, 1, 2, None]
    states = ("closed", "half_open", "open")
    assert [sample("lsent_circuit_state", "pacs", "state", state) for state in states] == [1, 0, 0]
    assert [sample("lsent_circuit_state", "viewer", "state", state) for state in states] == [0, 0, 1]


def test_the_delivery_schema_names_the_migrated_tables(engine: Engine) -> None:
    inspector = inspect(engine)
    s = DELIVERY_SCHEMA
    if not inspector.has_table(s.deliveries):
        pytest.skip("the delivery tables are not in this database schema yet (results issue, migration 0003)")
    needed = {s.deliveries: {"id", s.destination, s.status},
              s.attempts: {s.attempt_delivery, s.attempt_outcome},
              s.circuits: {s.circuit_destination, s.circuit_state}}
    for table, columns in needed.items():
        assert columns <= {column["name"] for column in inspector.get_columns(table)}, table
    families = {family.name for family in DatabaseCollector(session_factory(engine)).collect()}
    assert {"lsent_deliveries", "lsent_delivery_attempts", "lsent_circuit_state"} <= families


def test_an_unreachable_database_reports_down_instead_of_failing_the_scrape() -> None:
    engine = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert _collect(engine) == {("lsent_database_up", ()): 0}
    finally:
        engine.dispose()


def test_a_job_whose_worker_died_counts_as_waiting_since_its_lease_expired(engine: Engine) -> None:
    start = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    with session_factory(engine).begin() as session:
        enqueue(session, "analyze_study", None, {}, max_attempts=3, now=start)
        enqueue(session, "analyze_study", None, {}, max_attempts=3, now=start + timedelta(minutes=30))
        claimed = claim(session, "dead-worker", ["analyze_study"], timedelta(minutes=2), now=start)
    assert claimed is not None
    later = start + timedelta(hours=1)
    collector = DatabaseCollector(session_factory(engine), clock=lambda: later)
    scraped = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in collector.collect() for sample in family.samples}
    kind = (("kind", "analyze_study"),)
    assert scraped[("lsent_queue_due_jobs", kind)] == 2
    # the claimed job's lease ran out at 8:02: the oldest claimable wait is 58 minutes
    assert scraped[("lsent_queue_oldest_due_seconds", kind)] == 58 * 60
    assert scraped[("lsent_queue_jobs", (*kind, ("status", "running")))] == 1
