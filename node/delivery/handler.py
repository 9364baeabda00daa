"""The ``deliver_results`` job: send one delivery's unacknowledged objects to its destination.

Each run is one attempt. The circuit breaker may make it wait first (not an
attempt) or probe with C-ECHO. Every attempt is recorded with each object's
remote status; an acknowledged object is never sent again by this delivery.
A delivery not finished is retried after its own backoff
(``delivery.retry``), and after the last attempt it is a dead letter.
Retrying cannot help when the destination does not know our or its AE
title, or accepts none of the contexts of an object's SOP class: such a
delivery is a dead letter at once, after its other objects were sent. Only
the kinds of object the destination takes now (its ``objects`` setting,
read at every attempt) are sent. Network work happens outside database
transactions.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.db.audit import (
    Delivery,
    DeliveryAttempt,
    DeliveryAttemptObject,
    DeliveryItem,
    DeliveryStatus,
    ResultObjectRow,
    StudyEvent,
    StudyStage,
)
from node.db.models import Job, JobStatus, utcnow
from node.delivery import breaker
from node.delivery.routes import Route, resolve
from node.delivery.sender import ObjectToSend, Sender, StoreOutcome
from node.queue.jobs import MAX_ERROR_CHARS, ClaimedJob, PermanentJobError, RetryAfter
from node.queue.policy import RetryPolicy
from node.queue.worker import JobContext
from node.settings import DeliverySettings

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its worker stopped mid-attempt: what the destination got is not known


INTERRUPTED = ("the attempt did not finish: its worker stopped (the destination may hold some of "
               "the objects; they are sent again)")


@dataclass(frozen=True)
class _Plan:
    delivery_id: int
    route: Route
    objects: tuple[ObjectToSend, ...]
    uids: dict[int, tuple[int, str]]  # item id -> (result object id, SOP Instance UID)
    gate: breaker.Gate
    # Unacknowledged items of kinds the destination no longer takes: (item id, object id, UID, kind).
    left_out: tuple[tuple[int, int, str, str], ...] = ()


@dataclass(frozen=True)
class _Next:
    """What the delivery's job does after an attempt: nothing more, retry (after ``delay``), or fail."""

    status: DeliveryStatus | None  # None: this job no longer owns the delivery
    delay: timedelta = timedelta(0)
    counted: bool = True
    reason: str | None = None  # why it is a dead letter


@dataclass(frozen=True)
class _GiveUp:
    """The delivery was made a dead letter; the job fails once that is committed."""

    reason: str


class DeliverResults:
    """Handler for ``deliver_results`` jobs (payload ``{"delivery_id": N}``)."""

    def __init__(self, settings: DeliverySettings, results_root: Path, sender: Sender,
                 rng: random.Random | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self._settings = settings
        self._results = results_root.resolve()
        self._sender = sender
        self._policy = RetryPolicy(settings.retry.backoff_base, settings.retry.backoff_max,
                                   settings.retry.backoff_jitter, settings.retry.max_attempts)
        self._rng = rng or random.Random()
        self._clock = clock

    def __call__(self, job: ClaimedJob, context: JobContext) -> None:
        delivery_id = job.payload.get("delivery_id")
        if not isinstance(delivery_id, int):
            raise PermanentJobError(f"job {job.id} names no delivery_id")
        with context.sessions.begin() as session:
            plan = self._prepare(session, job, delivery_id)
        if plan is None:
            return
        if isinstance(plan, _GiveUp):
            raise PermanentJobError(f"delivery {delivery_id}: {plan.reason}")
        if plan.gate.action == breaker.Action.WAIT:
            raise RetryAfter(f"circuit breaker of {plan.route.name} is open", plan.gate.wait,
                             count_attempt=False)
        if plan.gate.action == breaker.Action.PROBE:
            error = self._sender.echo(plan.route)
            with context.sessions.begin() as session:
                now = self._clock()
                breaker.record_probe(session, plan.route.name, error, self._settings.breaker, now)
                if error is not None:
                    _wait(session, plan.delivery_id, job.id, now, now + self._settings.breaker.open_for,
                          error)
            if error is not None:
                log.warning("destination %s still down (C-ECHO probe): %s", plan.route.name, error)
                raise RetryAfter(f"probe of {plan.route.name} failed: {error}",
                                 self._settings.breaker.open_for, count_attempt=False)
            log.info("destination %s answers again: circuit closed", plan.route.name)
        started = self._clock()
        outcome = self._sender.store(plan.route, plan.objects)
        with context.sessions.begin() as session:
            after = self._record(session, job, plan, outcome, started)
        if after.status == DeliveryStatus.DEAD:
            why = after.reason or outcome.association_error or "objects refused"
            raise PermanentJobError(f"delivery {delivery_id} to {plan.route.name} is a dead letter after "
                                    f"{job.attempt} attempt(s): {why}")
        if after.status == DeliveryStatus.QUEUED:
            raise RetryAfter(f"delivery {delivery_id} to {plan.route.name} unfinished", after.delay,
                             count_attempt=after.counted)

    def _prepare(self, session: Session, job: ClaimedJob, delivery_id: int) -> _Plan | _GiveUp | None:
        now = self._clock()
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise PermanentJobError(f"delivery {delivery_id} does not exist")
        if delivery.job_id != job.id or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
            log.info("job %d: delivery %d is %s (job %s now owns it); nothing to do", job.id, delivery_id,
                     delivery.status, delivery.job_id)
            return None
        if _unreported(session, delivery):  # left sending by a worker killed mid-attempt
            record_interrupted(session, delivery, now, INTERRUPTED)
        route = resolve(self._settings, delivery.destination, delivery.return_to_ae)
        if route is None:
            return self._give_up(session, delivery, now,
                                 f"destination {delivery.destination} is no longer configured (or disabled)")
        queued = session.get(Job, job.id)
        limit = self._settings.retry.give_up_after
        # Breaker waits and probes are not attempts, so without an age limit a destination
        # that never comes back would hold its deliveries forever, unseen by the audit.
        if queued is not None and now - queued.created_at >= limit:
            return self._give_up(session, delivery, now,
                                 f"not delivered within {limit} of being queued (last error: "
                                 f"{delivery.last_error or 'circuit breaker open'})")
        unacknowledged = session.execute(
            select(DeliveryItem.id, ResultObjectRow.id, ResultObjectRow.sop_instance_uid,
                   ResultObjectRow.path, ResultObjectRow.sha256, ResultObjectRow.kind)
            .join(ResultObjectRow, ResultObjectRow.id == DeliveryItem.result_object_id)
            .where(DeliveryItem.delivery_id == delivery_id, DeliveryItem.acknowledged_at.is_(None))
            .order_by(DeliveryItem.id)
        ).all()
        # An administrator who took a kind off the destination's objects and ran `resend` wants
        # the rest delivered, not that kind sent again.
        pending = [row for row in unacknowledged if route.takes(row.kind)]
        left_out = tuple((item_id, object_id, uid, kind) for item_id, object_id, uid, _, _, kind
                         in unacknowledged if not route.takes(kind))
        if not pending:
            finish_delivery(session, delivery, DeliveryStatus.DELIVERED, now, None,
                            note=_left_out_note(route, left_out))
            return None
        gate = breaker.gate(session, route.name, job.worker_id, self._settings.breaker, now)
        delivery.called_ae, delivery.host, delivery.port = route.called_ae, route.host, route.port
        if gate.action != breaker.Action.WAIT:
            delivery.status = DeliveryStatus.SENDING
        else:
            delivery.next_attempt_at = now + gate.wait
        delivery.updated_at = now
        return _Plan(
            delivery_id, route,
            tuple(ObjectToSend(item_id, self._results / path, sha)
                  for item_id, _, _, path, sha, _ in pending),
            {item_id: (object_id, uid) for item_id, object_id, uid, _, _, _ in pending},
            gate, left_out,
        )

    def _record(self, session: Session, job: ClaimedJob, plan: _Plan, outcome: StoreOutcome,
                started: datetime) -> _Next:
        now = self._clock()
        delivery = session.get(Delivery, plan.delivery_id, with_for_update=True)
        assert delivery is not None  # deliveries are never deleted
        delivery.attempts += 1
        acknowledged = [o for o in outcome.objects if o.acknowledged]
        result = (Outcome.DELIVERED if len(acknowledged) == len(plan.objects)
                  else Outcome.PARTIAL if acknowledged else Outcome.FAILED)
        errors = sorted({o.error for o in outcome.objects if o.error})
        error = outcome.association_error or ("; ".join(errors) if errors else None)
        attempt = DeliveryAttempt(
            delivery_id=delivery.id, destination=plan.route.name, attempt=delivery.attempts,
            started_at=started, finished_at=now, outcome=result.value,
            error=None if error is None else error[:MAX_ERROR_CHARS], worker=job.worker_id)
        session.add(attempt)
        session.flush()
        # What the destination answered is a fact whoever owns the delivery now, so it is kept.
        for item in outcome.objects:
            object_id, uid = plan.uids[item.key]
            session.add(DeliveryAttemptObject(attempt_id=attempt.id, result_object_id=object_id,
                                              sop_instance_uid=item.sop_instance_uid or uid,
                                              dimse_status=item.status, error=item.error))
            row = session.get(DeliveryItem, item.key)
            if row is not None:
                row.dimse_status = item.status
                if item.acknowledged:
                    row.acknowledged_at = now
        for _, object_id, uid, kind in plan.left_out:
            session.add(DeliveryAttemptObject(attempt_id=attempt.id, result_object_id=object_id,
                                              sop_instance_uid=uid, dimse_status=None,
                                              error=_not_taken(plan.route, kind)))
        if outcome.contacted:
            # A destination that answered, even with a rejection, is up: only silence counts.
            breaker.record_send(session, plan.route.name, outcome.connection_error, self._settings.breaker,
                                now)
        if not _owns(session, job, delivery):
            log.warning("delivery %d: attempt %d by %s ended after its job %d was taken over or the "
                        "delivery finished; its statuses are recorded, the delivery left %s", delivery.id,
                        delivery.attempts, job.worker_id, job.id, delivery.status)
            return _Next(None)
        # Counted after the attempt, not from it: `resend --again` may have cleared
        # acknowledgements while it ran, and those objects are still to send.
        unacknowledged = set(session.scalars(
            select(DeliveryItem.id)
            .join(ResultObjectRow, ResultObjectRow.id == DeliveryItem.result_object_id)
            .where(DeliveryItem.delivery_id == delivery.id, DeliveryItem.acknowledged_at.is_(None),
                   ResultObjectRow.kind.in_(plan.route.objects))))
        note = _left_out_note(plan.route, plan.left_out)
        if not unacknowledged:
            finish_delivery(session, delivery, DeliveryStatus.DELIVERED, now, None, note=note)
            return _Next(DeliveryStatus.DELIVERED)
        final = _final(outcome, unacknowledged)
        if final is not None:
            # Retrying cannot change this answer; the rest of the delivery was sent in this attempt.
            finish_delivery(session, delivery, DeliveryStatus.DEAD, now, final, note=note)
            return _Next(DeliveryStatus.DEAD, reason=final)
        if result == Outcome.DELIVERED:
            # every object sent was taken; the rest were asked for again meanwhile: send them now
            _wait_for_attempt(delivery, now, now, None)
            return _Next(DeliveryStatus.QUEUED, timedelta(0), counted=False)
        if job.attempt >= job.max_attempts:
            finish_delivery(session, delivery, DeliveryStatus.DEAD, now, error, note=note)
            return _Next(DeliveryStatus.DEAD, reason=error)
        delay = self._policy.delay(job.attempt, self._rng)
        attempt.retry_at = now + delay
        _wait_for_attempt(delivery, attempt.retry_at, now, error)
        log.warning("delivery %d to %s: attempt %d %s, next in %.1f s", delivery.id, plan.route.name,
                    delivery.attempts, result.value, delay.total_seconds())
        return _Next(DeliveryStatus.QUEUED, delay)

    def _give_up(self, session: Session, delivery: Delivery, now: datetime, reason: str) -> _GiveUp:
        finish_delivery(session, delivery, DeliveryStatus.DEAD, now, reason)
        return _GiveUp(reason)


def _final(outcome: StoreOutcome, unacknowledged: set[int]) -> str | None:
    """Why the delivery is a dead letter now, or None while retrying may still deliver it.

    It is one when the destination rejected the association for good (it
    does not know an AE title), or when every object still to send is of a
    SOP class it has just refused: those are refused the same way until its
    configuration changes, and `resend` sends them again once it has.
    """
    if outcome.final:
        return outcome.association_error
    refused = {o.key: o.error for o in outcome.objects if o.refused}
    if unacknowledged <= refused.keys():
        return "; ".join(sorted({refused[key] or "refused" for key in unacknowledged}))
    return None


def _not_taken(route: Route, kind: str) -> str:
    return f"not sent: {route.name} no longer takes {kind} objects (its objects setting)"


def _left_out_note(route: Route, left_out: tuple[tuple[int, int, str, str], ...]) -> str | None:
    kinds = sorted({kind for _, _, _, kind in left_out})
    if not kinds:
        return None
    return f"{', '.join(kinds)} not sent: {route.name} no longer takes them (its objects setting)"


def finish_delivery(session: Session, delivery: Delivery, status: DeliveryStatus, now: datetime,
                    error: str | None, note: str | None = None) -> None:
    """Make ``delivery`` delivered or a dead letter, with its study event (and ``note`` in it)."""
    delivery.status = status
    delivery.updated_at = now
    delivery.next_attempt_at = None
    if error is not None:
        delivery.last_error = error[:MAX_ERROR_CHARS]
    if status == DeliveryStatus.DELIVERED:
        delivery.delivered_at = now
        delivery.last_error = None
        stage, detail = StudyStage.DELIVERED, f"delivery {delivery.id} to {delivery.destination}"
    else:
        stage = StudyStage.DEAD_LETTER
        detail = f"delivery {delivery.id} to {delivery.destination}: {error}"
    if note is not None:
        detail += f"; {note}"
    session.add(StudyEvent(study_id=delivery.study_id, at=now, stage=stage,
                           detail=detail[:MAX_ERROR_CHARS]))
    if status == DeliveryStatus.DELIVERED:
        log.info("delivery %d to %s: delivered%s", delivery.id, delivery.destination,
                 "" if note is None else f" ({note})")
    else:  # what the destination or the node said, never patient data
        log.error("delivery %d to %s: dead letter: %s", delivery.id, delivery.destination, error)


def _owns(session: Session, job: ClaimedJob, delivery: Delivery) -> bool:
    """Whether ``job`` still holds its lease and owns the unfinished ``delivery``.

    A worker cut off from the database past its lease may come back after
    another took the job over, or after ``resend`` gave the delivery a new job.
    """
    if delivery.job_id != job.id or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
        return False
    owner = session.execute(select(Job.status, Job.lease_owner).where(Job.id == job.id)
                            .with_for_update()).one_or_none()
    return owner is not None and tuple(owner) == (JobStatus.RUNNING, job.worker_id)


def _wait(session: Session, delivery_id: int, job_id: int, now: datetime, until: datetime,
          error: str) -> None:
    """The delivery waits (for the breaker) instead of sending, unless another job owns it now."""
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.job_id != job_id or delivery.status != DeliveryStatus.SENDING:
        return
    _wait_for_attempt(delivery, until, now, error)


def job_failed(session: Session, job_id: int, status: JobStatus, error: str, now: datetime) -> None:
    """The queue ended a ``deliver_results`` attempt without the handler's bookkeeping.

    Its worker died, or the handler raised something unexpected. On the last
    attempt (``status`` failed) the delivery becomes a dead letter, so it is
    seen by ``v_failed_deliveries`` and ``resend --dead``; before, it is
    queued again. Nothing changes for a delivery another job owns or that is
    finished.
    """
    delivery = session.scalars(select(Delivery).where(Delivery.job_id == job_id).with_for_update()
                               ).one_or_none()
    if delivery is None or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
        return
    if _unreported(session, delivery):
        record_interrupted(session, delivery, now, error)
    if status == JobStatus.FAILED:
        finish_delivery(session, delivery, DeliveryStatus.DEAD, now, f"the job failed: {error}")
        return
    job = session.get(Job, job_id)
    _wait_for_attempt(delivery, None if job is None else job.run_after, now, error)


def _unreported(session: Session, delivery: Delivery) -> bool:
    """Whether ``delivery`` is sending and the attempt that made it so recorded nothing.

    An attempt that ended after its job was taken over records what the
    destination answered but leaves the status to the job's new owner.
    """
    if delivery.status != DeliveryStatus.SENDING:
        return False
    return session.scalar(select(DeliveryAttempt.id).where(
        DeliveryAttempt.delivery_id == delivery.id, DeliveryAttempt.started_at >= delivery.updated_at
    ).limit(1)) is None


def record_interrupted(session: Session, delivery: Delivery, now: datetime, error: str) -> None:
    """Record the attempt that left ``delivery`` sending and never came back to say how it went."""
    delivery.attempts += 1
    session.add(DeliveryAttempt(
        delivery_id=delivery.id, destination=delivery.destination, attempt=delivery.attempts,
        started_at=delivery.updated_at, finished_at=now, outcome=Outcome.INTERRUPTED.value,
        error=error[:MAX_ERROR_CHARS]))
    log.warning("delivery %d to %s: attempt %d was interrupted: %s", delivery.id, delivery.destination,
                delivery.attempts, error)


def _wait_for_attempt(delivery: Delivery, at: datetime | None, now: datetime, error: str | None) -> None:
    """Put ``delivery`` back in line for its next attempt at ``at``, with why the last one did not finish."""
    delivery.status = DeliveryStatus.QUEUED
    delivery.last_error = None if error is None else error[:MAX_ERROR_CHARS]
    delivery.next_attempt_at = at
    delivery.updated_at = now
