"""Ingest: a 300-instance 512 x 512 MR study sent by DCMTK storescu, node against bare receivers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Figure
from benchmarks.receivers import (
    PostgresDatabases,
    Running,
    dcmtk_storescp,
    fresh_dir,
    node,
    pynetdicom_storescp,
)
from benchmarks.studies import write_mr_study

Start = Callable[[Path], AbstractContextManager[Running]]
REFERENCE = "pynetdicom storescp"


@dataclass(frozen=True)
class Sent:
    seconds: float
    instances: int
    megabytes: float


def send(parts: list[Path], receiver: Running) -> Sent:
    """One storescu per part folder, all at once; seconds until the last one is done."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    megabytes = sum(p.stat().st_size for d in parts for p in d.iterdir()) / 1e6
    instances = sum(1 for d in parts for _ in d.iterdir())
    start = time.perf_counter()
    senders = [
        subprocess.Popen(["storescu", "+sd", "-aec", receiver.ae_title, "127.0.0.1", str(receiver.port),
                          str(d)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for d in parts
    ]
    errors = [s.communicate()[1] for s in senders]
    seconds = time.perf_counter() - start
    failed = [e.decode(errors="replace")[-500:] for s, e in zip(senders, errors, strict=True) if s.returncode]
    if failed:
        raise RuntimeError(f"storescu failed: {failed[0]}")
    stored = receiver.stored_files()
    if stored < instances:
        raise RuntimeError(f"receiver on port {receiver.port} stored {stored} of {instances} instances")
    return Sent(seconds, instances, megabytes)


RECEIVER_PROCESSES = 2  # one per core of the 2-core machine the targets are set for


def _receivers(work: Path, pg: PostgresDatabases | None) -> Iterator[tuple[str, Start]]:
    yield REFERENCE, pynetdicom_storescp
    processes = {"LSENT_DICOM__RECEIVER_PROCESSES": str(RECEIVER_PROCESSES)}
    yield "node (SQLite)", lambda d: node(d, f"sqlite:///{d / 'node.db'}")
    yield (f"node (SQLite, {RECEIVER_PROCESSES} receiver processes)",
           lambda d: node(d, f"sqlite:///{d / 'node.db'}", **processes))
    if pg is not None:
        yield "node (PostgreSQL)", lambda d: node(d, pg.new())
        yield (f"node (PostgreSQL, {RECEIVER_PROCESSES} receiver processes)",
               lambda d: node(d, pg.new(), **processes))
    yield "DCMTK storescp", dcmtk_storescp


def run(work: Path, *, instances: int, rounds: int, pg_url: str | None,
        log: Callable[[str], None]) -> list[Figure]:
    pg = PostgresDatabases(pg_url) if pg_url else None
    if pg is not None and (why := pg.available()):
        log(f"ingest: PostgreSQL skipped ({why})")
        pg = None
    try:
        return _measure(work, instances, rounds, pg, log)
    finally:
        if pg is not None:
            pg.drop_all()


def _measure(work: Path, instances: int, rounds: int, pg: PostgresDatabases | None,
             log: Callable[[str], None]) -> list[Figure]:
    receivers = list(_receivers(work, pg))
    rates: dict[tuple[str, int], list[float]] = {}
    mbps: dict[tuple[str, int], list[float]] = {}
    for round_no in range(rounds):
        for associations in (1, 4):
            # alternate: the order rotates each round so no receiver always follows the same one
            shift = round_no % len(receivers)
            for name, start in receivers[shift:] + receivers[:shift]:
                study = fresh_dir(work, "study")
                parts = write_mr_study(study, instances, associations, seed=round_no)
                target = fresh_dir(work, "receiver")
                with start(target) as receiver:
                    sent = send(parts, receiver)
                rates.setdefault((name, associations), []).append(sent.instances / sent.seconds)
                mbps.setdefault((name, associations), []).append(sent.megabytes / sent.seconds)
                log(f"ingest round {round_no + 1}/{rounds}, {associations} association(s), {name}: "
                    f"{rates[(name, associations)][-1]:.1f} instances/s, "
                    f"{mbps[(name, associations)][-1]:.1f} MB/s")
                shutil.rmtree(target)
                shutil.rmtree(study)
    return _figures(rates, mbps, [name for name, _ in receivers], instances)


def _figures(rates: dict[tuple[str, int], list[float]], mbps: dict[tuple[str, int], list[float]],
             names: list[str], instances: int) -> list[Figure]:
    figures = []
    for associations in (1, 4):
        plural = "s" if associations > 1 else ""
        section = f"ingest, {instances} x 512x512 MR, {associations} association{plural}"
        reference = rates[(REFERENCE, associations)]
        for name in names:
            target, check = "", None
            if name.startswith("node") and associations == 1:
                target, check = ">= 1.0x ref", _at_least(1.0)
            elif name.startswith("node"):
                target, check = ">= 1.5x ref", _at_least(1.5)
            figures.append(Figure(section, f"{name} instances/s", "inst/s", REFERENCE, True,
                                  rates[(name, associations)], reference, target, check))
            figures.append(Figure(section, f"{name} MB/s", "MB/s", REFERENCE, True,
                                  mbps[(name, associations)], mbps[(REFERENCE, associations)]))
    return figures


def _at_least(ratio: float) -> Callable[[float, float], bool]:
    return lambda _median, measured: measured >= ratio
