"""Study latency: last instance acknowledged -> last result object acknowledged at a destination.

One node (``serve``, embedded SQLite, one worker) delivers its result objects
to a C-STORE SCP in this process, which notes when it acknowledged each one.
A warm-up study is sent first: its latency includes the worker's first model
load and is reported on its own line. Then each round sends a fresh copy of
the analysis benchmark's phantom (three sagittal series, 15 x 512 x 512) with
DCMTK ``storescu``; the round's latency is the time from ``storescu``'s exit
(its last C-STORE answered) to the destination's last acknowledgement of that
study's objects, minus the configured quiet period.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from sqlalchemy import Engine, create_engine, text

from benchmarks.analysis import copy_with_new_uids, write_phantom
from benchmarks.common import Figure, free_port
from benchmarks.receivers import fresh_dir, node

TARGET_S = 15.0
QUIET_PERIOD_S = 2.0
DESTINATION_AE = "BENCHPACS"
TIMEOUT_S = 600.0


class Destination:
    """A C-STORE SCP that notes the monotonic time of each acknowledgement, per study."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acked: dict[str, list[float]] = {}

    def _on_store(self, event: Event) -> int:
        study_uid = str(event.dataset.StudyInstanceUID)
        with self._lock:
            self._acked.setdefault(study_uid, []).append(time.monotonic())
        return 0x0000

    def last_ack(self, study_uid: str) -> tuple[int, float]:
        """How many objects of the study were acknowledged, and when the last was."""
        with self._lock:
            times = self._acked.get(study_uid, [])
            return len(times), max(times, default=float("nan"))

    @contextmanager
    def serving(self, port: int) -> Iterator[None]:
        ae = AE(ae_title=DESTINATION_AE)
        ae.supported_contexts = AllStoragePresentationContexts
        server = ae.start_server(("127.0.0.1", port), block=False,
                                 evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        assert server is not None  # block=False returns the server
        try:
            yield
        finally:
            server.shutdown()


def _study_uid(folder: Path) -> str:
    first = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    return str(dcmread(first, stop_before_pixels=True).StudyInstanceUID)


def _delivered(engine: Engine, study_uid: str) -> bool:
    with engine.connect() as conn:
        pending, delivered = conn.execute(text(
            "SELECT sum(CASE WHEN d.status = 'delivered' THEN 0 ELSE 1 END), "
            "sum(CASE WHEN d.status = 'delivered' THEN 1 ELSE 0 END) "
            "FROM deliveries d JOIN studies s ON s.id = d.study_id "
            "WHERE s.study_instance_uid = :uid"), {"uid": study_uid}).one()
    return bool(delivered) and not pending


def _one_study(source: Path, port: int, ae_title: str, engine: Engine, destination: Destination) -> float:
    """Seconds from the last instance acknowledged to the last result acknowledged, minus the quiet period."""
    study_uid = _study_uid(source)
    subprocess.run(["storescu", "+sd", "+r", "-aec", ae_title, "127.0.0.1", str(port), str(source)],
                   check=True, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL)
    sent = time.monotonic()
    deadline = sent + TIMEOUT_S
    while time.monotonic() < deadline:
        if _delivered(engine, study_uid):
            count, last = destination.last_ack(study_uid)
            if count:
                return last - sent - QUIET_PERIOD_S
        time.sleep(0.1)
    raise RuntimeError(f"study {study_uid}: results not delivered within {TIMEOUT_S:.0f} s")


def run(work: Path, *, rounds: int, log: Callable[[str], None]) -> list[Figure]:
    phantom = write_phantom(work / "phantom")
    destination = Destination()
    latency = Figure("study latency (SQLite, 1 worker)",
                     "last instance -> last result acked, minus quiet period", "s", f"target {TARGET_S:g} s",
                     False, target=f"< {TARGET_S:g} s", target_ok=lambda median, _r: median < TARGET_S)
    warm = Figure(latency.section, "the same, first study after start-up (model load)", "s", "-", False)
    dest_port = free_port()
    destinations = [{"name": "bench", "ae_title": DESTINATION_AE, "host": "127.0.0.1", "port": dest_port}]
    target = fresh_dir(work, "node")
    database_url = f"sqlite:///{target / 'node.db'}"
    extra = {"LSENT_QUEUE__WORKERS": "1", "LSENT_STUDY__QUIET_PERIOD": str(QUIET_PERIOD_S),
             "LSENT_STUDY__COMPLETION_POLL_INTERVAL": "0.2", "LSENT_QUEUE__POLL_INTERVAL": "0.2",
             "LSENT_DELIVERY__DESTINATIONS": json.dumps(destinations)}
    engine = create_engine(database_url)
    try:
        with destination.serving(dest_port), node(target, database_url, **extra) as running:
            for round_no in range(rounds + 1):
                source = fresh_dir(work, "study")
                copy_with_new_uids(phantom, source)
                seconds = _one_study(source, running.port, running.ae_title, engine, destination)
                shutil.rmtree(source)
                if round_no == 0:
                    warm.values.append(seconds)
                    log(f"latency: warm-up study {seconds:.1f} s (includes the worker's model load)")
                    continue
                latency.values.append(seconds)
                latency.reference_values.append(TARGET_S)
                log(f"latency round {round_no}/{rounds}: {seconds:.1f} s")
    finally:
        engine.dispose()
    return [latency, warm]
