"""The receivers compared: the node, a bare pynetdicom storescp, DCMTK's storescp.

Each runs as its own process on a fresh port, folder (and database), and is
stopped after the run; only the sending is timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from benchmarks.common import CLI, PYTHON, free_port, stop, tree_peak_rss_mb, wait_listening, wait_logged

NODE_AE = "LSENTINEL"


@dataclass
class Running:
    port: int
    ae_title: str
    process: subprocess.Popen[bytes]
    storage: Path
    start_seconds: float

    def peak_mb(self) -> float:
        return tree_peak_rss_mb(self.process.pid)

    def stored_files(self) -> int:
        return sum(1 for p in self.storage.rglob("*") if p.is_file() and not p.name.startswith("."))


def _spawn(args: list[str], workdir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = (workdir / "receiver.log").open("ab")
    try:
        # TCP_NODELAY: DCMTK otherwise waits on delayed ACKs (the others ignore it)
        return subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TCP_NODELAY": "1", **(env or {})})
    finally:
        log.close()


@contextmanager
def _serving(args: list[str], workdir: Path, port: int, ae_title: str, storage: Path,
             env: dict[str, str] | None = None, ready_line: str | None = None) -> Iterator[Running]:
    process = _spawn(args, workdir, env)
    try:
        started = wait_listening(port, process)
        if ready_line is not None:
            # the port answers as soon as the first receiver listens; the node logs
            # ready_line once all its receiver processes do
            started += wait_logged(workdir / "receiver.log", ready_line, process)
        yield Running(port, ae_title, process, storage, started)
    finally:
        stop(process)


def node_env(port: int, workdir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """A receiver-only node: the shipped config/node.toml with port, folders and database overridden."""
    return {
        "LSENT_DICOM__PORT": str(port),
        "LSENT_DICOM__HOST": "127.0.0.1",
        "LSENT_STORAGE__ROOT": str(workdir / "storage"),
        "LSENT_STORAGE__RESULTS": str(workdir / "results"),
        "LSENT_STORAGE__MIN_FREE_BYTES": "0",
        "LSENT_DATABASE__URL": database_url,
        "LSENT_QUEUE__WORKERS": "0",
        "LSENT_STUDY__QUIET_PERIOD": "3600",
        **extra,
    }


@contextmanager
def node(workdir: Path, database_url: str, **extra: str) -> Iterator[Running]:
    port = free_port()
    with _serving([str(CLI), "serve"], workdir, port, NODE_AE, workdir / "storage",
                  node_env(port, workdir, database_url, **extra), ready_line="listening on ") as running:
        yield running


@contextmanager
def pynetdicom_storescp(workdir: Path) -> Iterator[Running]:
    """pynetdicom's own storescp app: decodes each data set and writes it, default PDU (16382)."""
    port = free_port()
    out = workdir / "out"
    out.mkdir()
    with _serving([str(PYTHON), "-m", "pynetdicom", "storescp", str(port), "-od", str(out), "-q"],
                  workdir, port, "STORESCP", out) as running:
        yield running


@contextmanager
def dcmtk_storescp(workdir: Path) -> Iterator[Running]:
    """DCMTK's storescp, one process forked per association (its way to serve several)."""
    port = free_port()
    out = workdir / "out"
    out.mkdir()
    with _serving(["storescp", "--fork", "-od", str(out), str(port)], workdir, port, "STORESCP",
                  out) as running:
        yield running


class PostgresDatabases:
    """Creates a fresh database per run on the PostgreSQL at ``admin_url``; drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self._engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self._created: list[str] = []

    def available(self) -> str | None:
        """None when reachable, else why not."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError) as exc:  # unreachable: skip PostgreSQL
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None

    def new(self) -> str:
        name = f"lsent_bench_{uuid.uuid4().hex[:12]}"
        with self._engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        base, _, _ = self._admin_url.rpartition("/")
        return f"{base}/{name}"

    def drop_all(self) -> None:
        with self._engine.connect() as conn:
            for name in self._created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._created.clear()
        self._engine.dispose()


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
