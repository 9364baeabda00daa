"""Analysis: seconds per phantom study on one core and peak memory; studies per minute per worker count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

from benchmarks.common import CLI, PYTHON, REPO, Figure
from benchmarks.receivers import PostgresDatabases, fresh_dir, node

SECONDS_TARGET = 10.0
MEMORY_TARGET_MB = 1500.0


def write_phantom(folder: Path) -> Path:
    """Three sagittal series of 15 slices, 512 x 512, one lesion and one fracture; its dicom folder."""
    subprocess.run([str(CLI), "phantom", str(folder), "--matrix", "512", "--pixel", "0.5625",
                    "--lesion", "L3:focal", "--fracture", "L1:2:benign", "--seed", "3"],
                   check=True, stdout=subprocess.DEVNULL)
    return folder / "dicom"


def one_core() -> list[str]:
    """taskset onto the last CPU this process may use (analysis on one core, as the target says)."""
    cpu = max(os.sched_getaffinity(0))
    return ["taskset", "-c", str(cpu)]


def analyse_in_child(study: Path, repeat: int) -> dict[str, float | list[float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([*one_core(), str(PYTHON), "-m", "benchmarks.analysis_child", str(study),
                           "--repeat", str(repeat)], check=True, capture_output=True, text=True, env=env)
    result: dict[str, float | list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(work: Path, *, rounds: int, quick: bool, pg_url: str | None,
        log: Callable[[str], None]) -> list[Figure]:
    study = write_phantom(work / "phantom")
    per_study = Figure("analysis (3 x 15 sagittal 512x512, one core)", "seconds per study (model loaded)",
                       "s", f"target {SECONDS_TARGET:g} s", False, target=f"< {SECONDS_TARGET:g} s",
                       target_ok=lambda median, _r: median < SECONDS_TARGET)
    cpu = Figure(per_study.section, "CPU seconds per study", "s", f"target {SECONDS_TARGET:g} s", False,
                 target=f"< {SECONDS_TARGET:g} s", target_ok=lambda median, _r: median < SECONDS_TARGET)
    load = Figure(per_study.section, "import + model load", "s", "-", False)
    memory = Figure(per_study.section, "peak RSS of the analysing process", "MB",
                    f"target {MEMORY_TARGET_MB:g} MB", False, target=f"< {MEMORY_TARGET_MB:g} MB",
                    target_ok=lambda median, _r: median < MEMORY_TARGET_MB)
    for round_no in range(rounds):
        result = analyse_in_child(study, repeat=2)
        seconds = result["seconds"]
        assert isinstance(seconds, list)
        per_study.values.append(min(seconds))
        per_study.reference_values.append(SECONDS_TARGET)
        cpu_seconds = result["cpu_seconds"]
        assert isinstance(cpu_seconds, list)
        cpu.values.append(min(cpu_seconds))
        cpu.reference_values.append(SECONDS_TARGET)
        load.values.append(float(result["load_seconds"]))  # type: ignore[arg-type]
        memory.values.append(float(result["peak_mb"]))  # type: ignore[arg-type]
        memory.reference_values.append(MEMORY_TARGET_MB)
        log(f"analysis round {round_no + 1}/{rounds}: {seconds} s per study, "
            f"{result['peak_mb']:.0f} MB peak, load {result['load_seconds']:.1f} s")
    figures = [per_study, cpu, load, memory]
    if quick:
        return figures
    if pg_url is None or PostgresDatabases(pg_url).available():
        log("analysis: studies per minute skipped (no PostgreSQL)")
        return figures
    return figures + throughput(work, study, pg_url, log)


def copy_with_new_uids(study: Path, out: Path) -> None:
    """The phantom study again as a new study (new study, series, instance and frame UIDs)."""
    uids: dict[str, str] = {}
    for path in sorted(study.rglob("*")):
        if not path.is_file():
            continue
        ds = dcmread(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if keyword in ds:
                old = str(ds[keyword].value)
                setattr(ds, keyword, uids.setdefault(old, generate_uid()))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        target = out / path.relative_to(study)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)


def throughput(work: Path, study: Path, pg_url: str, log: Callable[[str], None]) -> list[Figure]:
    """Studies per minute of a node with 1, 2 and 4 workers on PostgreSQL (all cores)."""
    figures = []
    one_worker: float | None = None
    for workers in (1, 2, 4):
        studies = max(2, 2 * workers)
        sources = fresh_dir(work, "copies")
        for i in range(studies):
            copy_with_new_uids(study, sources / f"s{i}")
        pg = PostgresDatabases(pg_url)
        url = pg.new()
        target = fresh_dir(work, "workers")
        try:
            rate = _studies_per_minute(target, url, sources, studies, workers)
        finally:
            pg.drop_all()
            shutil.rmtree(target)
            shutil.rmtree(sources)
        log(f"analysis: {workers} worker(s): {rate:.2f} studies/min")
        one_worker = one_worker or rate
        figures.append(Figure("analysis throughput (PostgreSQL, all cores)",
                              f"{workers} worker(s) studies/min", "/min", "1 worker", True,
                              [rate], [one_worker]))
    return figures


def _studies_per_minute(target: Path, url: str, sources: Path, studies: int, workers: int) -> float:
    extra = {"LSENT_QUEUE__WORKERS": str(workers), "LSENT_STUDY__QUIET_PERIOD": "1",
             "LSENT_STUDY__COMPLETION_POLL_INTERVAL": "0.5", "LSENT_QUEUE__POLL_INTERVAL": "0.5"}
    env = {**os.environ, "TCP_NODELAY": "1"}
    engine = create_engine(url)
    try:
        with node(target, url, **extra) as running:
            subprocess.run(["storescu", "+sd", "+r", "-aec", running.ae_title, "127.0.0.1", str(running.port),
                            str(sources)], check=True, env=env, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 60 * 60
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done, first, last = conn.execute(text(
                        "SELECT count(*), min(created_at), max(finished_at) FROM jobs "
                        "WHERE status IN ('succeeded', 'failed')")).one()
                if done >= studies:
                    return float(studies / ((last - first).total_seconds() / 60))
                time.sleep(1.0)
        raise RuntimeError("the workers did not finish in an hour")
    finally:
        engine.dispose()
