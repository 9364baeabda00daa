"""Large objects: the receiver's peak memory for one big Enhanced MR object (it must stream)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Figure
from benchmarks.receivers import fresh_dir, node, pynetdicom_storescp
from benchmarks.studies import write_enhanced_mr


def _send(path: Path, port: int, ae_title: str) -> None:
    subprocess.run(["storescu", "-aec", ae_title, "127.0.0.1", str(port), str(path)], check=True,
                   env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL, timeout=1800)


def run(work: Path, *, megabytes: int, log: Callable[[str], None]) -> list[Figure]:
    obj = work / "enhanced.dcm"
    size_mb = write_enhanced_mr(obj, megabytes) / 1e6
    log(f"large: Enhanced MR object of {size_mb:.0f} MB written")
    section = f"large object ({size_mb:.0f} MB Enhanced MR)"
    peak = Figure(section, "receiver peak RSS", "MB", "pynetdicom storescp", False,
                  target=f"far below {size_mb:.0f} MB", target_ok=lambda median, _r: median < size_mb / 2)
    growth = Figure(section, "receiver peak RSS over its idle RSS", "MB", "pynetdicom storescp", False,
                    target=f"far below {size_mb:.0f} MB", target_ok=lambda median, _r: median < size_mb / 4)
    target = fresh_dir(work, "node")
    with node(target, f"sqlite:///{target / 'node.db'}") as running:
        idle = running.peak_mb()
        _send(obj, running.port, running.ae_title)
        if running.stored_files() < 1:
            raise RuntimeError("the node did not store the large object")
        peak.values.append(running.peak_mb())
        growth.values.append(running.peak_mb() - idle)
    with pynetdicom_storescp(fresh_dir(work, "scp")) as running:
        idle = running.peak_mb()
        _send(obj, running.port, running.ae_title)
        peak.reference_values.append(running.peak_mb())
        growth.reference_values.append(running.peak_mb() - idle)
    log(f"large: node {peak.values[-1]:.0f} MB, pynetdicom storescp {peak.reference_values[-1]:.0f} MB")
    obj.unlink()
    return [peak, growth]
