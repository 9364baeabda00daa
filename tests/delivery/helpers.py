"""Delivery test helpers: a DCMTK storescp destination, a seeded analysis, a worker pool."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import AnalysisResult, Association, Instance, Series, Study, StudyStatus, utcnow
from node.delivery import DELIVER_RESULTS, Sender, publish_results
from node.delivery.handler import DeliverResults
from node.queue.worker import WorkerPool
from node.settings import DeliverySettings, QueueSettings
from node.tasks import build_failure_hooks
from tests.delivery.objects import write_objects
from tests.helpers.node import free_port

DEST_AE = "DEST"
OUR_AE = "LSENTTEST"


@dataclass
class Storescp:
    """DCMTK's storescp as a destination; not listening until :meth:`start`."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder.parent / f"{self.folder.name}.log"

    def start(self, *options: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["storescp", "-v", *options, "-aet", DEST_AE, "-od", str(self.folder), str(self.port)],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"storescp exited: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)
        raise RuntimeError("storescp did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def received_uids(self) -> list[str]:
        files = sorted(self.folder.iterdir()) if self.folder.exists() else []
        return sorted(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in files)

    def store_requests(self) -> int:
        """C-STORE requests storescp logged, including any re-sent object."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("Received Store Request")


def delivery_settings(port: int, *, retry: dict[str, Any] | None = None,
                      breaker: dict[str, Any] | None = None, destinations: list[dict[str, Any]] | None = None,
                      **extra: Any) -> DeliverySettings:
    """One destination "pacs" at ``port`` (or ``destinations``); fast retries, no jitter (exact delays)."""
    if destinations is None:
        destinations = [{"name": "pacs", "ae_title": DEST_AE, "host": "127.0.0.1", "port": port}]
    return DeliverySettings.model_validate({
        "calling_ae_title": OUR_AE,
        "connect_timeout": timedelta(seconds=5), "dimse_timeout": timedelta(seconds=10),
        "destinations": destinations,
        "retry": {"max_attempts": 4, "backoff_base": 0.2, "backoff_max": 5, "backoff_jitter": 0.0,
                  **(retry or {})},
        "breaker": {"failure_threshold": 100, "open_for": 1, **(breaker or {})},
        **extra,
    })


FINDINGS: dict[str, Any] = {
    "study_instance_uid": "", "algorithm_version": "test",
    "series_used": {"T1": None, "T2": None, "STIR": None},
    "levels": [
        {"level": "L2", "marrow_infiltration": "absent", "cortical_destruction": "absent",
         "soft_tissue_extension": "absent", "compression_fracture": "absent",
         "pathologic_fracture_pattern": "absent", "suspicious_for_malignancy": "absent",
         "genant_grade": 0, "height_loss_pct": 2.0, "ha_mm": 27.0, "hm_mm": 25.5, "hp_mm": 28.0,
         "lesion_fraction_pct": 0.0, "t1_marrow_disc_ratio": None},
        {"level": "L3", "marrow_infiltration": "present", "cortical_destruction": "present",
         "soft_tissue_extension": "indeterminate", "compression_fracture": "present",
         "pathologic_fracture_pattern": "present", "suspicious_for_malignancy": "present",
         "genant_grade": 2, "height_loss_pct": 31.5, "ha_mm": 18.0, "hm_mm": 17.1, "hp_mm": 26.2,
         "lesion_fraction_pct": 64.0, "t1_marrow_disc_ratio": 0.8},
    ],
    "study": {"suspicious_for_malignancy": "present", "multiple_lesions": "absent",
              "canal_compromise": "indeterminate", "suspicious_level_count": 1,
              "impression": "L3 suspicious. Triage aid, not a diagnosis."},
}


@dataclass(frozen=True)
class Seeded:
    study_id: int
    study_uid: str
    analysis_result_id: int
    job_ids: list[int]


def analysed_again(session: Session, seeded: Seeded) -> tuple[AnalysisResult, AnalysisResult]:
    """A second analysed result of the seeded study, with the first's findings: (first, new)."""
    old = session.get(AnalysisResult, seeded.analysis_result_id)
    assert old is not None
    new = AnalysisResult(study_id=seeded.study_id, outcome="analysed", algorithm_version="test",
                         findings=old.findings)
    session.add(new)
    session.flush()
    return old, new


def seed_analysis(sessions: sessionmaker[Session], settings: DeliverySettings, results_root: Path,
                  study_uid: str, *, calling_ae: str = "STORESCU", suspicious: bool = True,
                  storage_root: Path | None = None) -> Seeded:
    """A received, analysed study (rows as the receiver and analysis leave them) and its published results.

    With ``storage_root`` its one received instance is a file there too.
    """
    objects = write_objects(results_root / study_uid / "1", study_uid)
    findings = dict(FINDINGS, study_instance_uid=study_uid)
    if not suspicious:
        findings["study"] = dict(FINDINGS["study"], suspicious_for_malignancy="absent",
                                 suspicious_level_count=0)
    now = utcnow()
    with sessions.begin() as session:
        study = Study(study_instance_uid=study_uid, first_received_at=now, last_received_at=now,
                      status=StudyStatus.ANALYSED, completed_at=now)
        association = Association(calling_ae=calling_ae, called_ae=OUR_AE, peer_address="127.0.0.1",
                                  peer_port=40000, started_at=now, result="released", instances_received=1)
        session.add_all([study, association])
        session.flush()
        series = Series(study_id=study.id, series_instance_uid=generate_uid(), modality="MR",
                        plane="sagittal", sequence="T2")
        session.add(series)
        session.flush()
        relative = f"{study_uid}/{series.series_instance_uid}/1.dcm"
        if storage_root is not None:
            (storage_root / relative).parent.mkdir(parents=True, exist_ok=True)
            (storage_root / relative).write_bytes(b"0123456789")
        session.add(Instance(series_id=series.id, association_id=association.id,
                             sop_instance_uid=generate_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                             transfer_syntax_uid="1.2.840.10008.1.2.1", path=relative,
                             size_bytes=10, sha256="0" * 64, received_at=now))
        result = AnalysisResult(study_id=study.id, outcome="analysed", algorithm_version="test",
                                findings=findings, created_at=now)
        session.add(result)
        session.flush()
        job_ids = publish_results(session, settings, result.id, objects, results_root=results_root)
        return Seeded(study.id, study_uid, result.id, job_ids)


FAST_QUEUE = QueueSettings(workers=1, poll_interval=timedelta(seconds=0.05), lease=timedelta(seconds=30),
                           heartbeat=timedelta(seconds=5))


@contextmanager
def delivering(sessions: sessionmaker[Session], settings: DeliverySettings, results_root: Path,
               workers: int = 1, handler: DeliverResults | None = None) -> Iterator[WorkerPool]:
    """A worker pool running ``deliver_results`` jobs (by ``handler``) while the block runs."""
    handler = handler or DeliverResults(settings, results_root, Sender(OUR_AE, settings.connect_timeout,
                                                                       settings.dimse_timeout))
    pool = WorkerPool(FAST_QUEUE.model_copy(update={"workers": workers}), sessions,
                      {DELIVER_RESULTS: handler}, "delivery-test", on_failure=build_failure_hooks())
    pool.start()
    try:
        yield pool
    finally:
        pool.stop(10)
