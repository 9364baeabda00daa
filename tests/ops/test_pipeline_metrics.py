"""The compose topology in small: a receiving `serve` (no workers) and a `worker` process on
PostgreSQL, each with its endpoint; a phantom study sent with storescu is analysed, and the
worker's `/metrics` shows the analysis time and the study's latency, both show the finished job.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.volume import Sequence
from node.queue.completion import ANALYZE_STUDY
from phantom.implants import ImplantSpec
from phantom.render import SagittalGrid
from phantom.study import build_phantom
from phantom.writer import StudyIdentity, write_study
from tests.helpers.node import CLI, NodeProcess, free_port, running_node
from tests.helpers.senders import storescu
from tests.ops.scrape import health, samples, value
from tests.queue.helpers import wait_until


@contextmanager
def worker_process(node: NodeProcess, metrics_port: int) -> Iterator[Path]:
    """`lumbar-sentinel worker` on the node's configuration, its endpoint on ``metrics_port``."""
    log_path = node.workdir / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "--config", str(node.config), "worker", "--grace", "2"],
            cwd=node.workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "LSENT_QUEUE__WORKERS": "1",
                 "LSENT_METRICS__PORT": str(metrics_port)},
        )
    try:
        wait_until(lambda: "worker ready" in log_path.read_text(errors="replace")
                   or process.poll() is not None, "the worker to start", timeout=120)
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield log_path
    finally:
        process.terminate()
        process.wait(60)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_study_moves_the_analysis_metrics_of_serve_and_worker(database_url: str, tmp_path: Path) -> None:
    phantom = build_phantom(ImplantSpec(), np.random.default_rng(7),
                            sequences=(Sequence.T1, Sequence.T2, Sequence.STIR),
                            grid=SagittalGrid(n_slices=15))
    files = write_study(StudyIdentity.synthetic(7), phantom.series, tmp_path / "study")
    serve_port, worker_port = free_port(), free_port()
    sections: dict[str, dict[str, Any]] = {
        "study": {"quiet_period": 1, "completion_poll_interval": 0.2},
        "queue": {"workers": 0, "poll_interval": 0.2},
        "storage": {"min_free_bytes": 0, "results": str(tmp_path / "results")},
        "metrics": {"enabled": True, "port": serve_port},
    }
    with running_node(tmp_path / "node", database_url, sections) as node, worker_process(node, worker_port):
        assert health(worker_port)[0] == 200
        sent = storescu(node, files)
        assert sent.returncode == 0, sent.stderr

        def analysed() -> bool:
            return value(samples(serve_port), "lsent_queue_jobs", kind=ANALYZE_STUDY, status="succeeded") == 1

        wait_until(analysed, "the analysis to succeed", timeout=300)
        served, worked = samples(serve_port), samples(worker_port)
    assert value(served, "lsent_instances_received_total", outcome="stored") == len(files)
    assert value(served, "lsent_studies", status="analysed") == 1
    assert value(worked, "lsent_queue_jobs", kind=ANALYZE_STUDY, status="succeeded") == 1
    assert value(worked, "lsent_job_duration_seconds_count", kind=ANALYZE_STUDY, outcome="succeeded") == 1
    assert (value(worked, "lsent_job_duration_seconds_sum", kind=ANALYZE_STUDY, outcome="succeeded") or 0) > 0
    assert value(worked, "lsent_study_latency_seconds_count") == 1
    # the receiver ran no job: its own histogram stayed empty
    assert value(served, "lsent_job_duration_seconds_count", kind=ANALYZE_STUDY, outcome="succeeded") is None
