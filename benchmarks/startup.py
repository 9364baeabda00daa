"""Start-up: wall time and peak memory of `--help`, `echo`, `db current` and a receiver-only `serve`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import CLI, PYTHON, Figure, run_measured
from benchmarks.receivers import dcmtk_storescp, fresh_dir, node, pynetdicom_storescp

FLOOR = "python -c pass"


def _pair(section: str, name: str, reference: str, limit: float | None,
          unit: str = "s") -> Figure:
    if limit is None:
        return Figure(section, name, unit, reference, False)
    return Figure(section, name, unit, reference, False, target=f"< {limit:g} {unit}",
                  target_ok=lambda median, _ratio: median < limit)


def run(work: Path, *, rounds: int, log: Callable[[str], None]) -> list[Figure]:
    env = dict(os.environ)
    sqlite = f"sqlite:///{work / 'admin.db'}"
    help_time = _pair("start-up", "`--help` wall", FLOOR, 0.5)
    help_mem = _pair("start-up", "`--help` peak RSS", FLOOR, None, "MB")
    db_time = _pair("start-up", "`db current` wall", FLOOR, 0.5)
    db_mem = _pair("start-up", "`db current` peak RSS", FLOOR, None, "MB")
    echo_time = _pair("start-up", "`echo` wall", "DCMTK echoscu", 0.5)
    echo_mem = _pair("start-up", "`echo` peak RSS", "DCMTK echoscu", None, "MB")
    serve_time = _pair("start-up", "receiver-only `serve` until listening", "pynetdicom storescp", None)
    serve_mem = _pair("start-up", "receiver-only `serve` peak RSS", "pynetdicom storescp", 150, "MB")
    floor = [str(PYTHON), "-c", "pass"]
    with dcmtk_storescp(fresh_dir(work, "peer")) as peer:
        for round_no in range(rounds):
            for subject, reference, args in (
                (help_time, help_mem, [str(CLI), "--help"]),
                (db_time, db_mem, [str(CLI), "db", "current"]),
            ):
                done = run_measured(args, {**env, "LSENT_DATABASE__URL": sqlite})
                ref = run_measured(floor)
                subject.values.append(done.seconds)
                subject.reference_values.append(ref.seconds)
                reference.values.append(done.peak_mb)
                reference.reference_values.append(ref.peak_mb)
            ours = run_measured([str(CLI), "echo", "127.0.0.1", str(peer.port), "--aec", "ANY"])
            theirs = run_measured(["echoscu", "127.0.0.1", str(peer.port)])
            if ours.returncode or theirs.returncode:
                raise RuntimeError(f"echo failed: ours {ours.returncode}, echoscu {theirs.returncode}")
            echo_time.values.append(ours.seconds)
            echo_time.reference_values.append(theirs.seconds)
            echo_mem.values.append(ours.peak_mb)
            echo_mem.reference_values.append(theirs.peak_mb)
            target = fresh_dir(work, "serve")
            with node(target, f"sqlite:///{target / 'node.db'}") as running:
                serve_time.values.append(running.start_seconds)
                serve_mem.values.append(running.peak_mb())
            with pynetdicom_storescp(fresh_dir(work, "scp")) as running:
                serve_time.reference_values.append(running.start_seconds)
                serve_mem.reference_values.append(running.peak_mb())
            log(f"start-up round {round_no + 1}/{rounds}: --help {help_time.values[-1]:.2f} s, "
                f"echo {echo_time.values[-1]:.2f} s, serve {serve_time.values[-1]:.2f} s "
                f"{serve_mem.values[-1]:.0f} MB")
    return [help_time, help_mem, db_time, db_mem, echo_time, echo_mem, serve_time, serve_mem]
