"""`/healthz` and `/metrics` of a real node over real HTTP, with DCMTK as the sender.

The counters move as a study goes through: instances stored, duplicated and
refused, associations accepted, rejected and released, the study completing
into a queued analysis job; `/healthz` names the check that fails.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from node.db.engine import session_factory
from node.db.models import utcnow
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import enqueue
from tests.helpers.dicom import StudyUIDs, mr_instance, write_study
from tests.helpers.node import CLI, NodeProcess, free_port, running_node
from tests.helpers.senders import echoscu, store, storescu
from tests.ops.scrape import health, samples, value
from tests.queue.helpers import wait_until

CALLERS = [{"ae_title": "STORESCU"}, {"ae_title": "PYNETDICOM"}]


def test_metrics_and_health_follow_a_study(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    sections: dict[str, dict[str, Any]] = {
        "dicom": {"allowed_callers": CALLERS},
        "study": {"quiet_period": 1, "completion_poll_interval": 0.2},
        "metrics": {"enabled": True, "port": port},
    }
    with running_node(tmp_path / "node", database_url, sections) as node:
        status, body = health(port)
        assert status == 200, body
        assert body["status"] == "ok"
        assert all(check["ok"] for check in body["checks"].values())
        assert _health_command(node).returncode == 0
        before = samples(port)
        assert value(before, "lsent_database_up") == 1
        assert value(before, "lsent_instances_received_total", outcome="stored") == 0
        assert value(before, "lsent_associations_total", result="accepted") == 0

        _, files = write_study(tmp_path / "study", 5)
        for _ in range(2):  # the second time every instance is a duplicate
            sent = storescu(node, files)
            assert sent.returncode == 0, sent.stderr
        broken = mr_instance(*_uids(), 1)
        del broken.StudyInstanceUID
        [refused] = store(node, [broken])
        assert refused.Status == 0xC001
        assert echoscu(node, calling="INTRUDER").returncode != 0

        def queued() -> bool:
            scraped = samples(port)
            return (value(scraped, "lsent_queue_jobs", kind=ANALYZE_STUDY, status="queued") == 1
                    and value(scraped, "lsent_associations_ended_total", result="released") == 3)

        wait_until(queued, "the study's analysis job in /metrics")
        after = samples(port)
    assert value(after, "lsent_instances_received_total", outcome="stored") == 5
    assert value(after, "lsent_instances_received_total", outcome="duplicate") == 5
    assert value(after, "lsent_instances_rejected_total", status="0xC001") == 1
    assert value(after, "lsent_associations_total", result="accepted") == 3
    assert value(after, "lsent_associations_total", result="rejected") == 1
    assert value(after, "lsent_associations_open") == 0
    assert value(after, "lsent_queue_due_jobs", kind=ANALYZE_STUDY) == 1
    assert value(after, "lsent_studies", status="complete") == 1


def test_healthz_answers_503_naming_the_failed_check(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    results = tmp_path / "results"
    sections: dict[str, dict[str, Any]] = {
        "storage": {"min_free_bytes": 0, "results": str(results)},
        "metrics": {"enabled": True, "port": port},
    }
    with running_node(tmp_path / "node", database_url, sections) as node:
        # a node cannot start on such a folder; this one loses it while it runs
        shutil.rmtree(results)
        results.write_text("results cannot go into a file", encoding="utf-8")
        status, body = health(port)
        assert status == 503, body
        assert body["status"] == "unhealthy"
        assert body["checks"]["storage"]["ok"] is False
        assert body["checks"]["storage"]["folder"] == str(results)
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["queue"]["ok"] is True
        checked = _health_command(node)
        assert checked.returncode == 1
        assert '"status": "unhealthy"' in checked.stdout

        # A job due an hour ago that no worker took: the queue is stuck (default limit 30 min).
        with node.engine() as engine, session_factory(engine).begin() as session:
            enqueue(session, ANALYZE_STUDY, None, {}, max_attempts=1, run_after=utcnow() - timedelta(hours=1))
        status, body = health(port)
        scraped = samples(port)
    assert status == 503
    assert body["checks"]["queue"]["ok"] is False
    assert body["checks"]["queue"]["stuck_kinds"] == [ANALYZE_STUDY]
    assert body["checks"]["queue"]["oldest_due_seconds"] >= 3600
    assert (value(scraped, "lsent_queue_oldest_due_seconds", kind=ANALYZE_STUDY) or 0) >= 3600


def _health_command(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    """`lumbar-sentinel health`, the compose file's container health check, on the node's settings."""
    return subprocess.run([str(CLI), "--config", str(node.config), "health"], cwd=node.workdir,
                          capture_output=True, text=True, check=False, timeout=60)


def _uids() -> tuple[str, str]:
    uids = StudyUIDs.new()
    return uids.study, uids.series[0]
