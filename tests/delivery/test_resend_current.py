"""`resend` sends a study's current result again, never one a newer analysis replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.cli import main
from node.db.audit import Delivery, DeliveryStatus, ResultObjectRow
from node.delivery import publish_results
from tests.delivery.helpers import Storescp, analysed_again, delivering, delivery_settings, seed_analysis
from tests.delivery.objects import write_objects
from tests.helpers.node import write_config
from tests.queue.helpers import wait_until


def _statuses(sessions: sessionmaker[Session]) -> dict[int, str]:
    with sessions() as session:
        return {d.analysis_result_id: d.status for d in session.scalars(select(Delivery))}


def _resend(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[list[Any], str]:
    capsys.readouterr()
    assert main(["--config", str(config), "resend", *args, "--format", "json"]) == 0
    said = capsys.readouterr()
    rows: list[Any] = json.loads(said.out)
    return rows, said.err


def test_resend_leaves_dead_letters_of_superseded_results(
        sessions: sessionmaker[Session], storescp: Storescp, database_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    down = delivery_settings(storescp.port, retry={"max_attempts": 1})  # storescp not started yet
    seeded = seed_analysis(sessions, down, results, generate_uid())
    with sessions.begin() as session:  # a re-analysis replaces the result; both deliveries fail
        old, new = analysed_again(session, seeded)
        old.superseded_by_id = new.id
        objects = write_objects(results / seeded.study_uid / "2", seeded.study_uid)
        publish_results(session, down, new.id, objects, results_root=results)
        current = new.id
    with delivering(sessions, down, results):
        wait_until(lambda: set(_statuses(sessions).values()) == {DeliveryStatus.DEAD}, "two dead letters")
    storescp.start()
    config = write_config(tmp_path / "node.toml", {
        "database": {"url": database_url},
        "storage": {"root": str(tmp_path / "storage"), "results": str(results)},
        "delivery": {"destinations": [
            {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": storescp.port}]},
    })
    rows, said = _resend(capsys, config, "--destination", "pacs")
    with sessions() as session:
        current_delivery = session.scalars(
            select(Delivery.id).where(Delivery.analysis_result_id == current)).one()
    assert [row["delivery_id"] for row in rows] == [current_delivery]
    assert "1 dead delivery of superseded results left as they are" in said
    rows, said = _resend(capsys, config, "--dead")
    assert rows == [] and "1 dead delivery of superseded results left as they are" in said
    with delivering(sessions, delivery_settings(storescp.port), results):
        wait_until(lambda: _statuses(sessions)[current] == DeliveryStatus.DELIVERED, "the current result")
    assert _statuses(sessions)[seeded.analysis_result_id] == DeliveryStatus.DEAD
    with sessions() as session:
        sent = sorted(session.scalars(select(ResultObjectRow.sop_instance_uid)
                                      .where(ResultObjectRow.analysis_result_id == current)))
    assert storescp.received_uids() == sent  # the outdated SR never reached the PACS
