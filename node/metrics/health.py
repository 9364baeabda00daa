"""``/healthz``: can this process do its work? Database, storage and queue, each checked on request.

A load balancer or orchestrator restarts or routes around a process that
answers 503; the JSON body says which check failed, without secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import utcnow
from node.metrics.collector import due_jobs
from node.storage.files import probe_writable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    checks: dict[str, Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "checks": {name: {"ok": check.ok, **check.detail} for name, check in self.checks.items()},
        }


class HealthCheck:
    """Database reachable, every folder in ``folders`` writable, no job claimable for over ``stuck_after``,
    and every watched part of the process (its threads) still running."""

    def __init__(self, sessions: sessionmaker[Session], folders: Sequence[Path], stuck_after: timedelta,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        if stuck_after <= timedelta(0):
            raise ValueError(f"stuck_after must be positive, got {stuck_after}")
        self._sessions = sessions
        self._folders = tuple(folders)
        self._stuck_after = stuck_after
        self._clock = clock
        self._parts: dict[str, Callable[[], bool]] = {}

    def watch(self, name: str, died: Callable[[], bool]) -> None:
        """Report ``name`` stopped (unhealthy) when ``died()``: a thread this process needs ended."""
        if not name:
            raise ValueError("name must not be empty")
        self._parts[name] = died

    def run(self) -> Health:
        database, queue = self._database_and_queue()
        checks = {"database": database, "storage": self._storage(), "queue": queue}
        if self._parts:
            stopped = sorted(name for name, died in self._parts.items() if died())
            checks["threads"] = Check(not stopped, {"stopped": stopped})
        return Health(checks)

    def _database_and_queue(self) -> tuple[Check, Check]:
        limit = self._stuck_after.total_seconds()
        try:
            with self._sessions() as session:
                session.execute(text("SELECT 1"))
                ages = {kind: oldest for kind, (_, oldest) in due_jobs(session, self._clock()).items()}
        except SQLAlchemyError as exc:
            log.warning("health: database unreachable: %s", type(exc).__name__)
            error = {"error": type(exc).__name__}
            return Check(False, error), Check(False, {"error": "database unreachable"})
        oldest = max(ages.values(), default=0.0)
        stuck = sorted(kind for kind, age in ages.items() if age > limit)
        queue = {"oldest_due_seconds": round(oldest, 1), "stuck_after_seconds": limit, "stuck_kinds": stuck}
        return Check(True), Check(not stuck, queue)

    def _storage(self) -> Check:
        for folder in self._folders:
            try:
                probe_writable(folder)
            except OSError as exc:
                log.warning("health: %s not writable: %s", folder, exc.strerror)
                return Check(False, {"folder": str(folder), "error": exc.strerror or type(exc).__name__})
        return Check(True, {"folders": [str(folder) for folder in self._folders]})
