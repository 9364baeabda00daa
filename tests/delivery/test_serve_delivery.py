"""A running node (`lumbar-sentinel serve`) delivers queued results, keeps receiving while the
destination is down, and its retention loop deletes the images once the results are delivered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import Delivery, DeliveryAttempt, DeliveryStatus, RetentionDeletion
from node.db.models import Instance
from tests.delivery.helpers import DEST_AE, OUR_AE, Storescp, delivery_settings, seed_analysis
from tests.helpers.node import running_node
from tests.helpers.senders import storescu
from tests.queue.helpers import SAGITTAL, wait_until, write_series


def _count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return len(session.scalars(select(model)).all())


def _status(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        return session.scalars(select(Delivery.status)).one()


def test_serve_delivers_after_an_outage_and_cleans_up(
        sessions: sessionmaker[Session], storescp: Storescp, database_url: str, tmp_path: Path) -> None:
    storage, results = tmp_path / "storage", tmp_path / "results"
    settings = delivery_settings(storescp.port)
    seeded = seed_analysis(sessions, settings, results, generate_uid(), storage_root=storage)
    sections: dict[str, dict[str, Any]] = {
        "storage": {"root": str(storage), "results": str(results)},
        "storage.retention": {"enabled": True, "delete_after": 0, "interval": 0.2},
        "queue": {"workers": 1, "poll_interval": 0.05},
        "delivery": {"calling_ae_title": OUR_AE, "destinations": [
            {"name": "pacs", "ae_title": DEST_AE, "host": "127.0.0.1", "port": storescp.port}]},
        "delivery.retry": {"max_attempts": 10, "backoff_base": 0.2, "backoff_max": 1, "backoff_jitter": 0},
    }
    with running_node(tmp_path / "node", database_url, sections) as node:
        wait_until(lambda: _count(sessions, DeliveryAttempt) >= 2, "failed attempts while the PACS is down")
        # the node keeps receiving meanwhile
        _, paths = write_series(tmp_path / "incoming", generate_uid(), "T2", SAGITTAL)
        sent = storescu(node, paths)
        assert sent.returncode == 0, sent.stderr
        assert _count(sessions, Instance) == 1 + len(paths)
        storescp.start()
        wait_until(lambda: _status(sessions) == DeliveryStatus.DELIVERED, "delivery")
        wait_until(lambda: _count(sessions, RetentionDeletion) == 1, "retention")
    assert len(storescp.received_uids()) == 2
    assert not (storage / seeded.study_uid).exists()
    assert all(path.exists() for path in results.rglob("*.dcm"))
