"""Processes, peak memory, medians and the printed table shared by every benchmark."""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = Path(sys.executable)
CLI = PYTHON.parent / "lumbar-sentinel"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Seconds until ``port`` accepts a connection; raises if the process exits first."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{process.args!r} did not listen on {port} within {timeout} s")


def wait_logged(log: Path, line: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Seconds until ``log`` holds ``line``; raises if the process exits first."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before logging {line!r}")
        if log.exists() and line in log.read_text(errors="replace"):
            return time.perf_counter() - start
        time.sleep(0.01)
    raise RuntimeError(f"{process.args!r} did not log {line!r} within {timeout} s")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def tree_peak_rss_mb(pid: int) -> float:
    """VmHWM of ``pid`` plus its children's (forking receivers)."""
    total = peak_rss_mb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += tree_peak_rss_mb(int(child))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Finished:
    seconds: float
    peak_mb: float
    returncode: int


def run_measured(args: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Finished:
    """Run to completion; wall time and the command's own peak RSS.

    The peak comes from GNU time, which forks (not vfork) a small process: a
    child spawned straight from this process would report this process's
    peak, since Linux carries the maximum RSS across exec.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *args],
                              env=dict(env) if env is not None else None, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        peak_kb = int(report.read().split()[-1])
    return Finished(seconds, peak_kb / 1024, done.returncode)


@dataclass
class Figure:
    """One measured quantity of one subject, several runs, and the same of its reference."""

    section: str
    name: str
    unit: str
    reference: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)
    reference_values: list[float] = field(default_factory=list)
    target: str = ""
    target_ok: Callable[[float, float], bool] | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def reference_median(self) -> float:
        return statistics.median(self.reference_values) if self.reference_values else float("nan")

    @property
    def ratios(self) -> list[float]:
        """Subject over reference per pair of runs (the runs were made alternately)."""
        return [v / r for v, r in zip(self.values, self.reference_values, strict=False) if r]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    def verdict(self) -> str:
        if self.target_ok is None or not self.values:
            return ""
        return "yes" if self.target_ok(self.median, self.ratio) else "NO"


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def print_table(figures: Sequence[Figure], out: Callable[[str], None] = print) -> None:
    """A Markdown table: one line per figure, its median, its reference's, and the median ratio."""
    out("| section | figure | median | reference | reference median | ratio (median of pairs) "
        "| runs | target | holds |")
    out("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in figures:
        ratios = ", ".join(f"{r:.2f}" for r in f.ratios)
        out(f"| {f.section} | {f.name} | {_fmt(f.median)} {f.unit} | {f.reference} | "
            f"{_fmt(f.reference_median)} {f.unit if f.reference_values else ''} | "
            f"{_fmt(f.ratio)}{f' ({ratios})' if len(f.ratios) > 1 else ''} | {len(f.values)} | "
            f"{f.target} | {f.verdict()} |")
    for f in figures:
        if f.note:
            out(f"- {f.section} / {f.name}: {f.note}")
