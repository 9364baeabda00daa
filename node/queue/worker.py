"""Worker threads: claim a job, keep its lease alive, run its handler, finish it.

The loop is one of the two places a broad ``except`` is allowed: a handler
that raises fails its job (retried per the policy) and the worker goes on.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Job, JobStatus, utcnow
from node.privacy import describe, redact, traceback_text
from node.queue.jobs import (
    ClaimedJob,
    JobCancelled,
    PermanentJobError,
    RetryAfter,
    claim,
    complete,
    defer,
    fail,
    fail_exhausted_leases,
    heartbeat,
    release,
)
from node.queue.policy import RetryPolicy
from node.settings import QueueSettings

log = logging.getLogger(__name__)

# After a stop releases a job, how long its handler gets to notice the cancellation and return.
SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its job.

    ``cancelled`` is set when the lease is lost or the pool is stopping; a
    long handler should check it between steps and return early.
    """

    sessions: sessionmaker[Session]
    worker_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    private: set[str] = field(default_factory=set)

    def keep_private(self, values: Iterable[str]) -> None:
        """Values the handler read that identify the patient (:func:`node.privacy.identifying_values`):
        should the job fail, they are replaced in the error it keeps and logs."""
        self.private.update(values)


class JobHandler(Protocol):
    def __call__(self, job: ClaimedJob, context: JobContext) -> None: ...


class FailureHook(Protocol):
    """Told, in the transaction that records it, that a job's attempt ended without its handler's
    bookkeeping: its handler raised, or its worker died on the last attempt. ``status`` is the job's
    new status (queued for a retry, or failed)."""

    def __call__(self, session: Session, job_id: int, status: JobStatus, error: str,
                 now: datetime) -> None: ...


@dataclass
class _Running:
    job: ClaimedJob
    context: JobContext
    done: threading.Event = field(default_factory=threading.Event)


def process_name() -> str:
    """A worker name unique to this process: host, pid and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkerPool:
    """``settings.workers`` threads running jobs of the kinds in ``handlers``.

    ``on_failure`` has a hook per job kind that keeps records of its own
    (a delivery's status) true when the queue fails or retries its job.
    """

    def __init__(
        self,
        settings: QueueSettings,
        sessions: sessionmaker[Session],
        handlers: Mapping[str, JobHandler],
        name: str,
        *,
        on_failure: Mapping[str, FailureHook] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("handlers must map at least one job kind to a handler")
        if not name:
            raise ValueError("name must not be empty")
        self._settings = settings
        self._sessions = sessions
        self._handlers = dict(handlers)
        self._on_failure = dict(on_failure or {})
        self._policy = RetryPolicy.from_settings(settings)
        self._rng = rng or random.Random()
        self._name = f"{name}:{uuid.uuid4().hex[:6]}"[:120]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._next_reap = 0.0

    @property
    def worker_ids(self) -> list[str]:
        return [f"{self._name}/{index}" for index in range(self._settings.workers)]

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("WorkerPool.start() called twice")
        for worker_id in self.worker_ids:
            thread = threading.Thread(target=self._loop, args=(worker_id,), name=f"worker {worker_id}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        log.info("started %d worker(s) for %s", len(self._threads), ", ".join(sorted(self._handlers)))

    def stop(self, timeout: float, *, settle: float = SETTLE_SECONDS) -> list[int]:
        """Stop claiming, wait up to ``timeout`` s for running jobs, release the rest.

        Returns the ids of the jobs released. Their handlers are cancelled and
        get ``settle`` more seconds to return; one that does not (it is inside
        a step it cannot leave, such as an inference) is listed by
        :attr:`lingering` and cannot finish its job.
        """
        if timeout < 0 or settle < 0:
            raise ValueError(f"timeout and settle must not be negative, got {timeout} and {settle}")
        self._stopping.set()
        self._join(timeout)
        with self._lock:
            leftovers = list(self._running.values())
        released: list[int] = []
        for running in leftovers:
            try:
                with self._sessions.begin() as session:
                    if release(session, running.job):
                        released.append(running.job.id)
            except SQLAlchemyError:
                log.exception("could not release job %d (study %s); its lease will expire",
                              running.job.id, running.job.study_uid)
            # Released first, so a handler that stops on this cannot finish the job.
            running.context.cancelled.set()
        if released:
            log.warning("released unfinished job(s) %s", released)
        # idle threads end at once; a cancelled handler gets `settle` to return
        self._join(settle)
        return released

    @property
    def died(self) -> bool:
        """A worker thread ended while the pool runs (an unexpected error outside a handler: see the log)."""
        return not self._stopping.is_set() and any(not thread.is_alive() for thread in self._threads)

    @property
    def lingering(self) -> list[str]:
        """Names of worker threads still running (after :meth:`stop`: handlers that did not return)."""
        return [thread.name for thread in self._threads if thread.is_alive()]

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self, worker_id: str) -> None:
        poll = self._settings.poll_interval.total_seconds()
        while not self._stopping.is_set():
            try:
                job = self._claim(worker_id)
            except SQLAlchemyError:
                log.exception("worker %s could not claim a job; retrying", worker_id)
                self._stopping.wait(poll)
                continue
            if job is None:
                self._stopping.wait(poll)
                continue
            self._run(job)

    def _claim(self, worker_id: str) -> ClaimedJob | None:
        # Before the claim, not only when it finds nothing: on a queue that is never empty a job
        # whose worker died on its final attempt (and its study) would wait for a lull. Not after
        # it: an error here would then lose the job just claimed.
        if self._reap_due():
            with self._sessions.begin() as session:
                now = utcnow()
                for job_id in fail_exhausted_leases(session, now=now):
                    log.error("job %d failed: its lease expired on the final attempt", job_id)
                    kind = session.scalar(select(Job.kind).where(Job.id == job_id))
                    self._failed(session, job_id, kind, JobStatus.FAILED,
                                 "its worker stopped on the final attempt", now)
        with self._sessions.begin() as session:
            return claim(session, worker_id, list(self._handlers), self._settings.lease)

    def _failed(self, session: Session, job_id: int, kind: str | None, status: JobStatus, error: str,
                now: datetime) -> None:
        hook = self._on_failure.get(kind or "")
        if hook is not None:
            hook(session, job_id, status, error, now)

    def _reap_due(self) -> bool:
        # Leases expire on the scale of `heartbeat`, so looking that often is
        # enough; every idle poll of every thread would just add write locks.
        with self._lock:
            now = time.monotonic()
            if now < self._next_reap:
                return False
            self._next_reap = now + self._settings.heartbeat.total_seconds()
            return True

    def _run(self, job: ClaimedJob) -> None:
        running = _Running(job, JobContext(self._sessions, job.worker_id))
        with self._lock:
            self._running[job.id] = running
        beat = threading.Thread(target=self._heartbeat, args=(running,), name=f"heartbeat job {job.id}",
                                daemon=True)
        beat.start()
        log.info("job %d (%s, attempt %d/%d) for study %s started by %s",
                 job.id, job.kind, job.attempt, job.max_attempts, job.study_uid, job.worker_id)
        error: str | None = None
        retry = True
        cancelled = False
        deferred: RetryAfter | None = None
        try:
            self._handlers[job.kind](job, running.context)
        except JobCancelled:
            cancelled = True
        except RetryAfter as exc:
            deferred = exc
        except PermanentJobError as exc:  # a handler's verdict (a dead letter, images deleted): no bug
            retry = False
            error = describe(exc, running.context.private)
            log.error("job %d (%s) for study %s cannot succeed: %s", job.id, job.kind, job.study_uid,
                      redact(str(exc), running.context.private))
        except Exception as exc:  # noqa: BLE001 - the worker loop: any handler error fails its job; logged redacted
            error = describe(exc, running.context.private)
            log.error("job %d (%s) for study %s raised\n%s", job.id, job.kind, job.study_uid,
                      traceback_text(exc, running.context.private))
        finally:
            running.done.set()
            beat.join()
        try:
            if cancelled:
                self._give_back(job)
            elif deferred is not None:
                self._defer(job, deferred)
            else:
                self._finish(job, error, retry)
        except SQLAlchemyError:
            log.exception("could not record the end of job %d (study %s); its lease will expire",
                          job.id, job.study_uid)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _finish(self, job: ClaimedJob, error: str | None, retry: bool) -> None:
        with self._sessions.begin() as session:
            now = utcnow()
            if error is None:
                outcome: JobStatus | None = JobStatus.SUCCEEDED if complete(session, job, now=now) else None
            else:
                outcome = fail(session, job, error, self._policy, self._rng, retry=retry, now=now)
                if outcome is not None:
                    self._failed(session, job.id, job.kind, outcome, error, now)
        if outcome is None:
            log.warning("job %d (study %s) finished after %s lost its lease; result not recorded",
                        job.id, job.study_uid, job.worker_id)
        elif outcome == JobStatus.SUCCEEDED:
            log.info("job %d (%s) for study %s succeeded", job.id, job.kind, job.study_uid)
        elif outcome == JobStatus.QUEUED:
            log.warning("job %d (%s) for study %s will be retried", job.id, job.kind, job.study_uid)
        else:
            log.error("job %d (%s) for study %s failed for good", job.id, job.kind, job.study_uid)

    def _defer(self, job: ClaimedJob, deferred: RetryAfter) -> None:
        with self._sessions.begin() as session:
            now = utcnow()
            kept = defer(session, job, deferred.delay, str(deferred), count_attempt=deferred.count_attempt,
                         now=now)
            if kept and deferred.count_attempt and job.attempt >= job.max_attempts:
                self._failed(session, job.id, job.kind, JobStatus.FAILED, str(deferred), now)
        log.info("job %d (%s) for study %s deferred %.1f s: %s%s", job.id, job.kind, job.study_uid,
                 deferred.delay.total_seconds(), deferred, "" if kept else " (lease lost: not recorded)")

    def _give_back(self, job: ClaimedJob) -> None:
        with self._sessions.begin() as session:
            released = release(session, job)
        log.info("job %d (study %s) cancelled%s", job.id, job.study_uid,
                 ", released" if released else "; it was released or reclaimed already")

    def _heartbeat(self, running: _Running) -> None:
        interval = self._settings.heartbeat.total_seconds()
        job = running.job
        while not running.done.wait(interval):
            try:
                with self._sessions.begin() as session:
                    owned = heartbeat(session, job.id, job.worker_id, self._settings.lease)
            except SQLAlchemyError:
                log.exception("heartbeat for job %d (study %s) failed; will retry", job.id, job.study_uid)
                continue
            if not owned:
                log.warning("job %d (study %s): %s lost its lease", job.id, job.study_uid, job.worker_id)
                running.context.cancelled.set()
                return


def exit_process(status: int, pool: WorkerPool | None) -> int:
    """``status``, or end the process at once with it when ``pool`` has lingering threads.

    A released handler may still be inside native code that cannot be
    interrupted (PyTorch inference). Finalising the interpreter under it ends
    that thread with ``pthread_exit``, whose unwinding through C++ frames calls
    ``std::terminate`` ("terminate called without an active exception",
    SIGABRT). So the process ends with ``os._exit`` instead: the caller has
    released the jobs and disposed its engine; the logs are flushed here.
    """
    lingering = pool.lingering if pool is not None else []
    if not lingering:
        return status
    log.warning("ending the process without waiting for %s (its job was released)", ", ".join(lingering))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
