"""A real node under test: `lumbar-sentinel serve` in a subprocess on a free port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from node.db.engine import create_db_engine
from node.storage.root import STORE_MARKER

CLI = Path(sys.executable).parent / "lumbar-sentinel"
AE_TITLE = "LSENTTEST"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# Receiver tests do not need analyses: no workers, and studies never go quiet.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "dicom": {"ae_title": AE_TITLE, "host": "127.0.0.1"},
    "storage": {"min_free_bytes": 0},
    "study": {"quiet_period": 3600},
    "queue": {"workers": 0},
    "logging": {"level": "INFO"},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        # a sub-section (e.g. delivery.retry) as an inline table
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} to TOML")


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``sections`` as TOML; a list of mappings becomes an array of tables."""
    lines: list[str] = []
    for name, values in sections.items():
        tables = {k: v for k, v in values.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if k not in tables]
        for key, items in tables.items():
            for item in items:
                lines.append(f"[[{name}.{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class NodeProcess:
    workdir: Path
    config: Path
    database_url: str
    port: int
    grace: float | None
    log_path: Path
    storage_root: Path
    ae_title: str = AE_TITLE
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("node already running")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        grace = [] if self.grace is None else ["--grace", str(self.grace)]
        self.process = subprocess.Popen(
            [str(CLI), "--config", str(self.config), "serve", *grace],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if "listening on" in self.log_text()[offset:]:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log_text()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"node did not start listening in {START_TIMEOUT} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process is None:
            raise RuntimeError("node not started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the crash test's power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        engine = create_db_engine(self.database_url)
        try:
            yield engine
        finally:
            engine.dispose()


def make_node(workdir: Path, database_url: str, sections: Mapping[str, Mapping[str, Any]] | None = None,
              *, grace: float | None = 2.0) -> NodeProcess:
    """A node configured by the test defaults updated with ``sections``; not started.

    ``grace`` is passed as ``serve --grace``; None leaves each shutdown grace to its setting.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    merged: dict[str, dict[str, Any]] = {name: dict(values) for name, values in _DEFAULTS.items()}
    for name, values in (sections or {}).items():
        merged.setdefault(name, {}).update(values)
    merged["dicom"]["port"] = port
    merged["database"] = {"url": database_url}
    storage_root = Path(merged["storage"].setdefault("root", str(workdir / "storage")))
    config = write_config(workdir / "node.toml", merged)
    return NodeProcess(workdir=workdir, config=config, database_url=database_url, port=port,
                       grace=grace, log_path=workdir / "node.log", storage_root=storage_root,
                       ae_title=merged["dicom"]["ae_title"])


@contextmanager
def running_node(workdir: Path, database_url: str,
                 sections: Mapping[str, Mapping[str, Any]] | None = None,
                 *, grace: float | None = 2.0) -> Iterator[NodeProcess]:
    """Start a node, yield it, and stop it (SIGTERM, then SIGKILL if it hangs)."""
    node = make_node(workdir, database_url, sections, grace=grace)
    node.start()
    try:
        yield node
    finally:
        node.terminate()


def stored_files(root: Path) -> list[Path]:
    """Every file under the storage root but the store's marker, temporary ones included."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != STORE_MARKER)


def receiver_process_pids(node: NodeProcess) -> list[int]:
    """PIDs of the extra receiver processes the node has started so far (from its log)."""
    return [int(pid) for pid in re.findall(r"started receiver process \S+ \(pid (\d+)\)", node.log_text())]
