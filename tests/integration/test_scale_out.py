"""Scale-out on PostgreSQL: two receivers, three worker processes, one database, one storage folder.

STUDIES phantom studies are sent, split over the two receivers (`serve` with
queue.workers = 0); three `lumbar-sentinel worker` processes analyse them. One
worker is killed with SIGKILL while it analyses a study: its job's lease
expires and another worker runs it again. Every study must end analysed, with
exactly one current (non-superseded) result. When the tree delivers results
(issue 18), a DCMTK storescp destination must receive each study's SR, SEG
and key image exactly once.

The studies are copies, with new UIDs, of the sagittal T2 series of one small
phantom (9 slices of 160 x 160, a lesion at L3): the node analyses a study
with a single sequence too, in about a third of the time of three. Each
worker runs one thread (OMP_NUM_THREADS=1), as three processes share 2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, func, select

from node.db.engine import create_db_engine
from node.db.models import AnalysisResult, Association, Job, JobEvent, JobStatus, Study, StudyStatus
from node.queue.completion import ANALYZE_STUDY
from tests.helpers.databases import module_database
from tests.helpers.node import CLI, NodeProcess, free_port, make_node, write_config
from tests.helpers.results import delivery_missing, destination, result_files
from tests.helpers.senders import store
from tests.queue.helpers import wait_until

STUDIES = 20
WORKERS = 3
DESTINATION_AE = "SCALEDEST"
# Short leases, so the killed worker's job is claimable again within seconds.
QUEUE = {"workers": 1, "lease": 5, "heartbeat": 1, "poll_interval": 0.2, "backoff_base": 1}
ANALYSIS_TIMEOUT = 900.0


def _template(folder: Path) -> list[Path]:
    run = subprocess.run(
        [str(CLI), "phantom", str(folder), "--lesion", "L3:focal", "--seed", "21",
         "--slices", "9", "--matrix", "160", "--pixel", "1.6"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    t2 = sorted((folder / "dicom").glob("*_SAG_T2_*/*.dcm"))
    assert t2, f"no sagittal T2 series under {folder / 'dicom'}"
    return t2


def _copies(template: list[Path], folder: Path, count: int) -> list[tuple[str, list[Path]]]:
    """``count`` copies of the template study, each with its own study, series, instance and FoR UIDs."""
    studies = []
    for index in range(count):
        study_uid, frame_uid = generate_uid(), generate_uid()
        series_uids: dict[str, str] = {}
        paths = []
        for path in template:
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.FrameOfReferenceUID = study_uid, frame_uid
            ds.SeriesInstanceUID = series_uids.setdefault(str(ds.SeriesInstanceUID), generate_uid())
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            target = folder / f"{index:02d}" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target)
            paths.append(target)
        studies.append((str(study_uid), paths))
    return studies


@dataclass
class Cluster:
    engine: Engine
    receivers: list[NodeProcess]
    workers: list[subprocess.Popen[bytes]]
    worker_config: Path
    logs: Path
    destination_dir: Path | None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with module_database("postgresql", tmp_path / "db") as url:
        storage, results = tmp_path / "storage", tmp_path / "results"
        delivery: dict[str, Any] | None = None
        scp: subprocess.Popen[bytes] | None = None
        destination_dir: Path | None = None
        if delivery_missing() is None:
            destination_dir = tmp_path / "destination"
            destination_dir.mkdir()
            port = free_port()
            scp = subprocess.Popen(["storescp", "-aet", DESTINATION_AE, "+uf", "-od", str(destination_dir),
                                    str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            delivery = {"destinations": [destination("scale-dest", DESTINATION_AE, port)],
                        "retry": {"backoff_base": 1, "backoff_max": 5}}
        common: dict[str, dict[str, Any]] = {
            "storage": {"root": str(storage), "results": str(results), "min_free_bytes": 0},
            "study": {"quiet_period": 2, "completion_poll_interval": 0.2},
            **({"delivery": delivery} if delivery else {}),
        }
        receivers = [
            make_node(tmp_path / f"receiver-{n}", url, {**common, "dicom": {"ae_title": f"LSENT-RX{n}"},
                                                        "queue": {**QUEUE, "workers": 0}})
            for n in (1, 2)
        ]
        logs = tmp_path / "logs"
        logs.mkdir()
        worker_config = write_config(tmp_path / "worker.toml",
                                     {**common, "database": {"url": url}, "queue": QUEUE})
        cluster = Cluster(create_db_engine(url), receivers, [], worker_config, logs, destination_dir)
        try:
            for receiver in receivers:  # one after the other: the first migrates the database
                receiver.start()
            for _ in range(WORKERS):
                start_worker(cluster)
            yield cluster
        finally:
            for proc in cluster.workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for receiver in receivers:
                receiver.terminate()
            if scp is not None:
                scp.kill()
                scp.wait()
            cluster.engine.dispose()


def start_worker(cluster: Cluster) -> subprocess.Popen[bytes]:
    log = (cluster.logs / f"worker-{len(cluster.workers)}.log").open("wb")
    proc = subprocess.Popen([str(CLI), "--config", str(cluster.worker_config), "worker", "--no-monitor",
                             "--grace", "5"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    log.close()
    cluster.workers.append(proc)
    return proc


def _running_job_of(engine: Engine, workers: list[subprocess.Popen[bytes]]) -> tuple[int, str, int] | None:
    """(job id, lease owner, worker index) of an analysis a worker process is running now."""
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.lease_owner)
                            .where(Job.status == JobStatus.RUNNING, Job.kind == ANALYZE_STUDY)).all()
    for job_id, owner in rows:
        for index, proc in enumerate(workers):
            if owner and f":{proc.pid}:" in owner and proc.poll() is None:
                return job_id, owner, index
    return None


def _poll(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Like ``wait_until``, at a pace that leaves the CPU to the workers during minutes of waiting."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def _statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(select(Study.status, func.count()).group_by(Study.status)).all()))


@pytest.mark.timeout(1800)
def test_two_receivers_three_workers_one_killed(cluster: Cluster, tmp_path: Path) -> None:
    studies = _copies(_template(tmp_path / "template"), tmp_path / "studies", STUDIES)
    engine = cluster.engine
    started = time.monotonic()

    def send(receiver: NodeProcess, batch: list[tuple[str, list[Path]]]) -> list[int]:
        return [int(status.Status) for _, paths in batch for status in store(receiver, paths)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        sending = [pool.submit(send, receiver, studies[n::2]) for n, receiver in enumerate(cluster.receivers)]
        # the power cut: SIGKILL a worker in the middle of an analysis
        found: list[tuple[int, str, int]] = []

        def analysing() -> bool:
            hit = _running_job_of(engine, cluster.workers)
            found.extend([hit] if hit else [])
            return hit is not None

        wait_until(analysing, "a worker process running an analysis", timeout=ANALYSIS_TIMEOUT)
        killed_job, killed_owner, killed_index = found[0]
        cluster.workers[killed_index].send_signal(signal.SIGKILL)
        cluster.workers[killed_index].wait()
        statuses = [s for future in sending for s in future.result()]
    assert statuses == [0] * sum(len(paths) for _, paths in studies)

    _poll(lambda: _statuses(engine)[StudyStatus.ANALYSED] == STUDIES, f"{STUDIES} studies analysed",
          ANALYSIS_TIMEOUT)
    elapsed = time.monotonic() - started

    with engine.connect() as conn:
        study_ids = dict(conn.execute(select(Study.study_instance_uid, Study.id)).all())
        current = Counter(conn.scalars(select(AnalysisResult.study_id).where(
            AnalysisResult.superseded_by_id.is_(None), AnalysisResult.outcome == "analysed")))
        jobs = conn.execute(select(Job.id, Job.study_id, Job.status, Job.attempts)
                            .where(Job.kind == ANALYZE_STUDY)).all()
        events = conn.execute(select(JobEvent.event, JobEvent.worker).where(JobEvent.job_id == killed_job)
                              .order_by(JobEvent.id)).all()
        called = Counter(conn.scalars(select(Association.called_ae)))
        claimers = set(conn.scalars(select(JobEvent.worker).where(JobEvent.event == "claimed")))

    assert sorted(study_ids) == sorted(uid for uid, _ in studies)
    assert _statuses(engine) == Counter({StudyStatus.ANALYSED: STUDIES})
    assert current == Counter({study_id: 1 for study_id in study_ids.values()}), \
        "every study has exactly one current analysis"
    assert len(jobs) == STUDIES and {status for _, _, status, _ in jobs} == {JobStatus.SUCCEEDED}
    # the killed worker's job: its lease expired, another worker claimed it and finished it
    assert ("lease_expired", killed_owner) in events, events
    assert events[-1][0] == "succeeded" and events[-2][0] == "claimed" and events[-2][1] != killed_owner
    assert called == Counter({"LSENT-RX1": STUDIES // 2, "LSENT-RX2": STUDIES - STUDIES // 2})
    assert len({worker.rsplit(":", 2)[0] for worker in claimers if worker}) >= 2, claimers
    print(f"{STUDIES} studies through 2 receivers and {WORKERS} workers (one killed) in {elapsed:.0f} s")

    if cluster.destination_dir is not None:
        _check_delivered_once(cluster.destination_dir, [uid for uid, _ in studies])

    for index, proc in enumerate(cluster.workers):
        if index != killed_index:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, (cluster.logs / f"worker-{index}.log").read_text()


def _check_delivered_once(folder: Path, study_uids: list[str]) -> None:
    expected = {(uid, kind) for uid in study_uids for kind in ("sr", "seg", "key_image")}

    def received() -> set[tuple[str, str]]:
        return {(pydicom.dcmread(f.path, stop_before_pixels=True).StudyInstanceUID, f.kind)
                for f in result_files(folder)}

    _poll(lambda: expected <= received(), "every study's SR, SEG and key image at the destination", 300)
    files = result_files(folder)
    per_study = Counter((str(pydicom.dcmread(f.path, stop_before_pixels=True).StudyInstanceUID), f.kind)
                        for f in files)
    assert per_study == Counter(dict.fromkeys(expected, 1)), "each object delivered exactly once"
    assert len({f.sop_instance_uid for f in files}) == len(files)
