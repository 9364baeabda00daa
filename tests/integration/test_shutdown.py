"""SIGTERM while `serve` is analysing a study: each grace from its own setting, a clean exit.

The analysis is inside PyTorch inference when the signal comes. Its job is
released after ``queue.shutdown_grace`` (not ``dicom.shutdown_grace``, set
here far longer than the analysis takes) and the process exits with status 0.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node.db.engine import session_factory
from node.db.models import Job, JobStatus
from tests.helpers.node import CLI, make_node
from tests.helpers.senders import storescu
from tests.queue.helpers import events_of, wait_until


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("phantom")
    subprocess.run([str(CLI), "phantom", str(folder)], check=True, capture_output=True, timeout=300)
    return sorted((folder / "dicom").rglob("*.dcm"))


def test_sigterm_during_an_analysis_releases_the_job_and_exits_cleanly(
    database_url: str, tmp_path: Path, phantom_files: list[Path]
) -> None:
    sections: dict[str, dict[str, Any]] = {
        "dicom": {"shutdown_grace": 3600},
        "study": {"quiet_period": 1, "completion_poll_interval": 0.2},
        "queue": {"workers": 1, "poll_interval": 0.2, "shutdown_grace": 0.5},
        "storage": {"results": str(tmp_path / "results")},
    }
    node = make_node(tmp_path, database_url, sections, grace=None)
    node.start()
    try:
        sent = storescu(node, phantom_files)
        assert sent.returncode == 0, sent.stderr
        # the model is loaded right before the inference starts
        wait_until(lambda: "vertebral-body model loaded" in node.log_text(), "the analysis to start",
                   timeout=300)
    finally:
        status = node.terminate()

    log = node.log_text()
    assert status == 0, log[-3000:]
    assert "terminate called" not in log
    assert "stopping: open associations get 3600 s, running jobs 0.5 s" in log
    assert "released unfinished job(s) [1]" in log
    with node.engine() as engine:
        with session_factory(engine)() as session:
            job = session.scalars(select(Job)).one()
            assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
        assert events_of(session_factory(engine), job.id) == ["queued", "claimed", "released"]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("findings.json"))
