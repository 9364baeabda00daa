"""Issue 17 item 1: the study's answer is the analysis of its newest content, in every interleaving.

A study's T1 series arrives alone and its analysis (job A) starts. While A
runs, the T2 and STIR series arrive; the study completes again and job B is
queued and reads all three. The real worker pool runs both jobs with the real
``analyze_study`` handler; instances go through the receiver's catalogue, so
each one moves the study's content generation as a C-STORE does. The model
each job loads waits at a gate the test opens, which fixes the order in which
the two jobs record. Whatever the order, the current result is B's and
covers T1, T2 and STIR, and nothing is left to queue.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from analysis.vertebrae.model import BodyModel
from node.db.engine import session_factory
from node.db.models import AnalysisResult, Job, JobStatus, Study, StudyStatus, utcnow
from node.pipeline.model import shipped_model
from node.queue.completion import ANALYZE_STUDY, CompletionMonitor
from node.queue.worker import WorkerPool
from node.settings import DeliverySettings, QueueSettings, StudySettings
from node.storage import InstanceCatalog, InstanceKey, InstanceRecord, InstanceStore
from node.tasks.analyze_study import AnalyzeStudy
from tests.queue.helpers import SAGITTAL, wait_until, write_series

QUIET = timedelta(seconds=20)
GATE_TIMEOUT = 120.0


class GatedModel:
    """The shipped model, handed to the n-th caller only once gate n is open."""

    def __init__(self, calls: int) -> None:
        self.entered = [threading.Event() for _ in range(calls)]
        self.gates = [threading.Event() for _ in range(calls)]
        self._lock = threading.Lock()
        self._calls = 0

    def __call__(self) -> BodyModel:
        with self._lock:
            n, self._calls = self._calls, self._calls + 1
        if n < len(self.gates):
            self.entered[n].set()
            if not self.gates[n].wait(GATE_TIMEOUT):
                raise TimeoutError(f"gate {n} never opened")
        return shipped_model()


class Sender:
    """Stores series of one study the way the C-STORE handler does (stage, then catalogue)."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], storage: Path, source: Path) -> None:
        self.study_uid = generate_uid()
        self.store = InstanceStore(storage, min_free_bytes=0, max_instance_bytes=10**8)
        # Received a quiet period ago: the monitor completes the study at its next scan.
        self.catalog = InstanceCatalog(engine, clock=lambda: utcnow() - 2 * QUIET)
        self.source = source

    def send(self, kind: str) -> str:
        series_uid, paths = write_series(self.source, self.study_uid, kind, SAGITTAL)
        for path in paths:
            key = InstanceKey(self.study_uid, series_uid, path.stem)
            record = InstanceRecord(key, MRImageStorage, ExplicitVRLittleEndian, modality="MR")
            with path.open("rb") as handle, self.store.stage(handle, key) as staged:
                self.catalog.record(record, staged)
        return series_uid


def _complete(sessions: sessionmaker[Session]) -> list[int]:
    monitor = CompletionMonitor(StudySettings(quiet_period=QUIET), QueueSettings(max_attempts=1), sessions)
    with sessions.begin() as session:
        return monitor.scan_once(session)


def _job_status(sessions: sessionmaker[Session], job_id: int) -> str:
    with sessions() as session:
        return session.get_one(Job, job_id).status


def _finished(sessions: sessionmaker[Session], job_id: int) -> None:
    wait_until(lambda: _job_status(sessions, job_id) in (JobStatus.SUCCEEDED, JobStatus.FAILED),
               f"job {job_id} to finish", timeout=300)
    assert _job_status(sessions, job_id) == JobStatus.SUCCEEDED


@pytest.mark.parametrize("order", ["first job records first", "second job records first",
                                   "first job records while receiving"])
def test_the_current_result_covers_the_newest_content(engine: Engine, tmp_path: Path, order: str) -> None:
    sessions = session_factory(engine)
    storage = tmp_path / "storage"
    sender = Sender(engine, sessions, storage, tmp_path / "sent")
    model = GatedModel(2)
    settings = QueueSettings(workers=2, poll_interval=timedelta(seconds=0.05), lease=timedelta(minutes=5),
                             heartbeat=timedelta(seconds=5), max_attempts=1)
    handler = AnalyzeStudy(storage, tmp_path / "results", model, DeliverySettings())
    pool = WorkerPool(settings, sessions, {ANALYZE_STUDY: handler}, "test")
    pool.start()
    try:
        sender.send("T1")
        [first] = _complete(sessions)
        assert model.entered[0].wait(GATE_TIMEOUT), "job A never loaded the model"
        sender.send("T2")
        sender.send("STIR")  # the study is receiving again, one content generation per instance
        if order == "first job records while receiving":
            model.gates[0].set()
            _finished(sessions, first)
        [second] = _complete(sessions)
        assert second != first  # A is running, so a new job is queued
        assert model.entered[1].wait(GATE_TIMEOUT), "job B never loaded the model"
        with sessions() as session:  # B has read the study, complete, with all three series
            assert session.scalars(select(Study.status)).one() == StudyStatus.COMPLETE
        if order == "first job records first":
            model.gates[0].set()
            _finished(sessions, first)
            model.gates[1].set()
            _finished(sessions, second)
        else:
            model.gates[1].set()
            _finished(sessions, second)
            model.gates[0].set()
            _finished(sessions, first)
    finally:
        for gate in model.gates:
            gate.set()
        pool.stop(30)

    with sessions() as session:
        study = session.scalars(select(Study)).one()
        current = session.scalars(
            select(AnalysisResult).where(AnalysisResult.superseded_by_id.is_(None))).all()
        results = session.scalars(select(AnalysisResult)).all()
    assert [r.job_id for r in current] == [second]
    assert {k for k, v in current[0].findings["series_used"].items() if v} == {"T1", "T2", "STIR"}
    assert study.status == StudyStatus.ANALYSED
    assert [r.job_id for r in results] == [second]  # A's stale result is not recorded
    assert current[0].content_version == study.content_version == 9  # 3 series of 3 instances
    assert _complete(sessions) == []  # quiet and answered: nothing more to queue
