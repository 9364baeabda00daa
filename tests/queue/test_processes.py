"""Worker processes against one database: no double runs, SIGKILL recovery, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from node.db.engine import create_db_engine, session_factory
from node.db.models import Job, JobStatus, Series, Study, StudyStatus
from node.queue.jobs import enqueue
from tests.conftest import REPO
from tests.queue.helpers import SAGITTAL, add_study, events_of, register_series, wait_until, write_series


@dataclass
class Node:
    """A database, a config file for it and a folder the test handlers write to."""

    url: str
    config: Path
    records: Path
    storage: Path
    logs: Path
    procs: list[subprocess.Popen[bytes]]

    def start(self, *command: str, **queue: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LSENT_")}
        env.update({"LSENT_QUEUE__LEASE": "1", "LSENT_QUEUE__HEARTBEAT": "0.2",
                    "LSENT_QUEUE__POLL_INTERVAL": "0.02", "LSENT_QUEUE__WORKERS": "2"})
        env.update({f"LSENT_QUEUE__{k.upper()}": v for k, v in queue.items()})
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def test_worker(self, grace: float = 5.0, **queue: str) -> subprocess.Popen[bytes]:
        return self.start(sys.executable, "-m", "tests.queue.run_test_worker", str(self.config),
                          str(self.records), str(grace), **queue)

    def records_named(self, prefix: str) -> list[str]:
        return sorted(p.name for p in self.records.iterdir() if p.name.startswith(prefix))

    def job_status(self, job_id: int) -> str:
        return self.job_statuses([job_id])[0]

    def job_statuses(self, job_ids: list[int]) -> list[str]:
        engine = create_db_engine(self.url)
        try:
            with session_factory(engine)() as session:
                rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids)))
                found = {job_id: status for job_id, status in rows}
            return [found[i] for i in job_ids]
        finally:
            engine.dispose()


@pytest.fixture
def node(database_url: str, tmp_path: Path) -> Iterator[Node]:
    records, storage, logs = tmp_path / "records", tmp_path / "storage", tmp_path / "logs"
    for folder in (records, storage, logs):
        folder.mkdir()
    config = tmp_path / "node.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[storage]\nroot = "{storage}"\n',
                      encoding="utf-8")
    node = Node(database_url, config, records, storage, logs, [])
    yield node
    for proc in node.procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _enqueue(url: str, kind: str, count: int, **payload: object) -> list[int]:
    engine = create_db_engine(url)
    try:
        with session_factory(engine).begin() as session:
            return [enqueue(session, kind, None, payload, max_attempts=3).id for _ in range(count)]
    finally:
        engine.dispose()


def _terminate(*procs: subprocess.Popen[bytes]) -> list[int]:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    return [proc.wait(60) for proc in procs]


def test_two_worker_processes_run_each_job_once_and_release_on_sigterm(node: Node) -> None:
    first, second = node.test_worker(grace=0.1), node.test_worker(grace=0.1)
    wait_until(lambda: len(node.records_named("ready-")) == 2, "both workers to start")
    ids = _enqueue(node.url, "record", 30, sleep=0.01)
    wait_until(lambda: len(node.records_named("ran-")) >= 30
               and set(node.job_statuses(ids)) == {JobStatus.SUCCEEDED}, "all 30 jobs to run")
    runs = Counter(int(name.split("-")[1]) for name in node.records_named("ran-"))
    assert runs == Counter(dict.fromkeys(ids, 1))

    [blocked] = _enqueue(node.url, "block", 1)
    wait_until(lambda: bool(node.records_named(f"started-{blocked}-")), "the blocking job to start")
    assert _terminate(first, second) == [0, 0]
    engine = create_db_engine(node.url)
    try:
        with session_factory(engine)() as session:
            job = session.get_one(Job, blocked)
            assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
        assert events_of(session_factory(engine), blocked) == ["queued", "claimed", "released"]
    finally:
        engine.dispose()


def test_job_of_a_killed_worker_runs_again_after_its_lease_expires(node: Node) -> None:
    [job_id] = _enqueue(node.url, "block", 1)
    doomed = node.test_worker(workers="1")
    wait_until(lambda: bool(node.records_named(f"started-{job_id}-")), "the job to start")
    # Started before the kill: it cannot take the job while the lease is renewed.
    survivor = node.test_worker(workers="1")
    doomed.kill()
    doomed.wait(60)
    (node.records / "unblock").touch()
    wait_until(lambda: node.job_status(job_id) == JobStatus.SUCCEEDED, "the job to run again")
    assert _terminate(survivor) == [0]
    assert {name.rsplit("-", 1)[1] for name in node.records_named("started-")} == {
        str(doomed.pid), str(survivor.pid)}
    assert len(node.records_named(f"ran-{job_id}-")) == 1
    engine = create_db_engine(node.url)
    try:
        assert events_of(session_factory(engine), job_id) == [
            "queued", "claimed", "lease_expired", "claimed", "succeeded"]
        with session_factory(engine)() as session:
            assert session.get_one(Job, job_id).attempts == 2
    finally:
        engine.dispose()


def test_lumbar_sentinel_worker_completes_classifies_and_analyses_a_study(node: Node) -> None:
    engine = create_db_engine(node.url)
    study_uid = generate_uid()
    try:
        with session_factory(engine).begin() as session:
            study_id = add_study(session, study_uid, datetime.now(UTC) - timedelta(minutes=1))
            series_uid, paths = write_series(node.storage, study_uid, "T2", SAGITTAL)
            register_series(session, node.storage, study_id, series_uid, paths)
        cli = Path(sys.executable).parent / "lumbar-sentinel"
        worker = node.start(str(cli), "--config", str(node.config), "worker", "--grace", "5",
                            workers="1")

        def finished() -> bool:
            with session_factory(engine)() as session:
                status = session.scalars(select(Job.status)).one_or_none()
                return status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

        wait_until(finished, "the worker to analyse the study", timeout=300)
        assert _terminate(worker) == [0]
        with session_factory(engine)() as session:
            assert session.scalars(select(Series.plane)).one() == "sagittal"
            assert session.scalars(select(Job.status)).one() == JobStatus.SUCCEEDED
            assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED
            job_id = session.scalars(select(Job.id)).one()
        # the results folder is relative to the worker's directory (the repository here)
        results = REPO / "var" / "results" / study_uid / str(job_id)
        log = (node.logs / "worker-0.log").read_text(encoding="utf-8")
        assert f"study {study_uid} analysed: " in log
        assert f"; results in {results}" in log
        assert (results / "findings.json").is_file()
    finally:
        engine.dispose()
