"""A worker process with test job kinds: ``python -m tests.queue.run_test_worker CONFIG RECORDS [GRACE]``.

It runs the real ``worker`` command's loop (settings file plus LSENT_*
environment, signals, clean stop) with handlers that leave files in RECORDS:

- ``record``: ``ran-<job>-<unique>`` once it ran;
- ``block``: ``started-<job>-<pid>`` at start, then waits for ``RECORDS/unblock``.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from pathlib import Path

from node.commands.worker import run_workers
from node.logs import configure_logging
from node.queue.jobs import ClaimedJob, JobCancelled
from node.queue.worker import JobContext, JobHandler
from node.settings import load_settings


def handlers(records: Path) -> dict[str, JobHandler]:
    def record(job: ClaimedJob, context: JobContext) -> None:
        threading.Event().wait(float(job.payload.get("sleep", 0)))
        (records / f"ran-{job.id}-{uuid.uuid4().hex}").touch()

    def block(job: ClaimedJob, context: JobContext) -> None:
        (records / f"started-{job.id}-{os.getpid()}").touch()
        while not (records / "unblock").exists():
            if context.cancelled.wait(0.02):
                raise JobCancelled(f"job {job.id} cancelled")
        (records / f"ran-{job.id}-{uuid.uuid4().hex}").touch()

    return {"record": record, "block": block}


def main(argv: list[str]) -> int:
    config, records = Path(argv[0]), Path(argv[1])
    grace = float(argv[2]) if len(argv) > 2 else 5.0
    settings = load_settings(config)
    configure_logging(settings.logging.level)
    started = threading.Event()

    def announce() -> None:
        if started.wait(60):
            (records / f"ready-{os.getpid()}").touch()

    threading.Thread(target=announce, daemon=True).start()
    return run_workers(settings, handlers(records), monitor=False, grace=grace, started=started)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
