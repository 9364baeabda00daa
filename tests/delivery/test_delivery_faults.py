"""A delivery's records stay true when its job ends abnormally, is taken over, or is resent mid-attempt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Comprehensive3DSRStorage  # type: ignore[attr-defined]
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import (
    BreakerState,
    Delivery,
    DeliveryAttempt,
    DeliveryItem,
    DeliveryStatus,
    DestinationBreaker,
)
from node.db.models import Job, utcnow
from node.delivery import DELIVER_RESULTS, Sender, requeue
from node.delivery.handler import DeliverResults
from node.delivery.routes import resolve
from node.delivery.sender import ObjectToSend, StoreOutcome
from node.queue.jobs import ClaimedJob, RetryAfter, claim, defer
from node.queue.worker import JobContext
from node.settings import DeliverySettings
from tests.delivery.helpers import OUR_AE, Storescp, delivering, delivery_settings, seed_analysis
from tests.helpers.node import free_port
from tests.queue.helpers import wait_until


class _Interrupting(Sender):
    """A real sender that runs ``during`` (another actor's change) before it sends, or raises instead."""

    def __init__(self, settings: DeliverySettings, during: Callable[[], None] | None = None,
                 fault: Exception | None = None) -> None:
        super().__init__(OUR_AE, settings.connect_timeout, settings.dimse_timeout)
        self._during = during
        self._fault = fault

    def store(self, route, objects: Sequence[ObjectToSend]) -> StoreOutcome:  # type: ignore[no-untyped-def]
        if self._fault is not None:
            raise self._fault
        if self._during is not None:
            self._during()
        return super().store(route, objects)


def _delivery(sessions: sessionmaker[Session]) -> Delivery:
    with sessions() as session:
        return session.scalars(select(Delivery)).one()


def _claim(sessions: sessionmaker[Session], worker: str = "w1",
           lease: timedelta = timedelta(seconds=60)) -> ClaimedJob:
    with sessions.begin() as session:
        job = claim(session, worker, [DELIVER_RESULTS], lease)
    assert job is not None
    return job


def test_a_worker_dying_on_the_last_attempt_makes_a_dead_letter(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    settings = delivery_settings(storescp.port, retry={"max_attempts": 1})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    # a worker claims the job, starts sending, and is killed: its lease runs out
    _claim(sessions, "killed", lease=timedelta(milliseconds=1))
    with sessions.begin() as session:
        session.execute(update(Delivery).values(status=DeliveryStatus.SENDING))
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    assert "worker stopped" in (_delivery(sessions).last_error or "")
    with sessions() as session:
        dead = session.execute(text("SELECT study_instance_uid FROM v_failed_deliveries")).scalars().all()
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "failed"
    assert dead == [seeded.study_uid]
    assert _attempts(sessions) == [(1, "interrupted")]


def test_an_attempt_whose_worker_was_killed_is_recorded_before_the_next_one(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    # The killed association may have handed over some objects: the audit listed only the
    # attempt that took over, as if it had been the first.
    storescp.start()
    settings = delivery_settings(storescp.port, retry={"max_attempts": 2})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    _claim(sessions, "killed", lease=timedelta(milliseconds=1))
    with sessions.begin() as session:
        session.execute(update(Delivery).values(status=DeliveryStatus.SENDING))
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivered")
    assert _attempts(sessions) == [(1, "interrupted"), (2, "delivered")]
    assert _delivery(sessions).attempts == 2
    with sessions() as session:
        first = session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)).first()
    assert first is not None and "its worker stopped" in (first.error or "")


def test_an_attempt_that_ended_after_its_job_was_taken_over_is_not_counted_again_as_interrupted(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    # It records what the destination answered but leaves the delivery sending, to the job's
    # new owner; that owner took the status for a killed attempt and counted it a second time.
    storescp.start()
    settings = delivery_settings(storescp.port, retry={"max_attempts": 3})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())

    def taken_over() -> None:
        with sessions.begin() as session:
            session.execute(update(Job).values(lease_owner="w2", lease_expires_at=utcnow()))

    handler = DeliverResults(settings, tmp_path / "results", _Interrupting(settings, during=taken_over))
    handler(_claim(sessions), JobContext(sessions, "w1"))
    assert _delivery(sessions).status == DeliveryStatus.SENDING
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivered")
    assert _attempts(sessions) == [(1, "delivered")]


def _attempts(sessions: sessionmaker[Session]) -> list[tuple[int, str]]:
    with sessions() as session:
        return [(a, o) for a, o in session.execute(
            select(DeliveryAttempt.attempt, DeliveryAttempt.outcome).order_by(DeliveryAttempt.id))]


@pytest.mark.parametrize(("max_attempts", "expected"), [(2, DeliveryStatus.QUEUED), (1, DeliveryStatus.DEAD)])
def test_an_unexpected_error_queues_the_delivery_again_or_makes_it_a_dead_letter(
        sessions: sessionmaker[Session], tmp_path: Path, max_attempts: int, expected: DeliveryStatus) -> None:
    settings = delivery_settings(free_port(), retry={"max_attempts": max_attempts})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    handler = DeliverResults(settings, tmp_path / "results",
                             _Interrupting(settings, fault=RuntimeError("a bug in the sender")))
    with delivering(sessions, settings, tmp_path / "results", handler=handler):
        wait_until(lambda: "a bug in the sender" in (_delivery(sessions).last_error or ""), "the error")
    delivery = _delivery(sessions)
    assert delivery.status == expected
    with sessions() as session:
        job = session.scalars(select(Job)).one()
    assert job.status == ("queued" if expected == DeliveryStatus.QUEUED else "failed")
    assert (delivery.next_attempt_at is not None) == (expected == DeliveryStatus.QUEUED)
    assert _attempts(sessions)[0] == (1, "interrupted")


def test_objects_asked_for_again_during_an_attempt_are_sent(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port)
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with sessions.begin() as session:  # the SR was acknowledged by an earlier attempt
        first_item = session.scalars(select(DeliveryItem).order_by(DeliveryItem.id)).first()
        assert first_item is not None
        first_item.acknowledged_at, first_item.dimse_status = utcnow(), 0

    def resend_again() -> None:
        with sessions.begin() as session:
            delivery = session.scalars(select(Delivery)).one()
            requeue(session, settings, delivery, again=True, reason="resend --again")

    handler = DeliverResults(settings, tmp_path / "results", _Interrupting(settings, during=resend_again))
    context = JobContext(sessions, "w1")
    job = _claim(sessions)
    with pytest.raises(RetryAfter) as deferred:
        handler(job, context)
    assert (deferred.value.delay, deferred.value.count_attempt) == (timedelta(0), False)
    assert _delivery(sessions).status == DeliveryStatus.QUEUED
    with sessions.begin() as session:  # as the worker pool does with a RetryAfter
        defer(session, job, deferred.value.delay, "deferred", count_attempt=False)
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery")
    with sessions() as session:
        assert session.scalars(select(DeliveryItem.acknowledged_at)).all().count(None) == 0
    assert len(storescp.received_uids()) == 2  # the SR, asked for again, was sent


def test_a_late_attempt_does_not_undo_a_delivery_finished_by_another_worker(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = delivery_settings(free_port())  # nothing listens: the late attempt fails

    def taken_over_and_finished() -> None:
        with sessions.begin() as session:
            session.execute(update(Job).values(lease_owner="w2"))
            session.execute(update(Delivery).values(status=DeliveryStatus.DELIVERED, delivered_at=utcnow()))

    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    handler = DeliverResults(settings, tmp_path / "results",
                             _Interrupting(settings, during=taken_over_and_finished))
    job = _claim(sessions)
    handler(job, JobContext(sessions, "w1"))  # nothing to retry: the job is not its own any more
    delivery = _delivery(sessions)
    assert delivery.status == DeliveryStatus.DELIVERED
    with sessions() as session:
        attempt = session.scalars(select(DeliveryAttempt)).one()
    assert (attempt.outcome, attempt.worker) == ("failed", "w1")  # what happened is still recorded


def test_a_failed_probe_leaves_the_delivery_waiting_not_sending(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = delivery_settings(free_port(), breaker={"failure_threshold": 1, "open_for": 30})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    now = utcnow()
    with sessions.begin() as session:
        session.add(DestinationBreaker(destination="pacs", state=BreakerState.OPEN, consecutive_failures=1,
                                       opened_at=now - timedelta(minutes=1), open_until=now, updated_at=now))
    handler = DeliverResults(settings, tmp_path / "results",
                             Sender(OUR_AE, settings.connect_timeout, settings.dimse_timeout))
    with pytest.raises(RetryAfter, match="probe of pacs failed"):
        handler(_claim(sessions), JobContext(sessions, "w1"))
    delivery = _delivery(sessions)
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > now + timedelta(seconds=20)
    assert "could not associate" in (delivery.last_error or "")


def test_an_attempt_that_reached_no_destination_leaves_the_breaker_as_it_was(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = delivery_settings(free_port(), breaker={"failure_threshold": 3})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    for path in (tmp_path / "results" / seeded.study_uid).rglob("*.dcm"):
        path.unlink()  # nothing can be read, so nothing is sent
    now = utcnow()
    with sessions.begin() as session:
        session.add(DestinationBreaker(destination="pacs", state=BreakerState.CLOSED, consecutive_failures=2,
                                       updated_at=now))
    handler = DeliverResults(settings, tmp_path / "results",
                             Sender(OUR_AE, settings.connect_timeout, settings.dimse_timeout))
    with pytest.raises(RetryAfter):
        handler(_claim(sessions), JobContext(sessions, "w1"))
    with sessions() as session:
        row = session.get(DestinationBreaker, "pacs")
        assert row is not None and row.consecutive_failures == 2


def test_a_destination_without_verification_answers_the_probe(tmp_path: Path) -> None:
    """The breaker's probe is a C-ECHO; a PACS that only stores must still count as up."""
    acceptor = AE(ae_title="STOREONLY")
    acceptor.add_supported_context(Comprehensive3DSRStorage)
    port = free_port()
    server = acceptor.start_server(("127.0.0.1", port), block=False)
    assert server is not None
    try:
        settings = delivery_settings(port, destinations=[
            {"name": "pacs", "ae_title": "STOREONLY", "host": "127.0.0.1", "port": port}])
        route = resolve(settings, "pacs", None)
        assert route is not None
        sender = Sender(OUR_AE, settings.connect_timeout, settings.dimse_timeout)
        assert sender.echo(route) is None
    finally:
        server.shutdown()
    assert sender.echo(route) is not None  # and one that is down is not


def test_resend_of_a_delivery_long_queued_gets_a_fresh_give_up_time(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port, retry={"give_up_after": 3600})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with sessions.begin() as session:  # queued two hours ago, waiting (say, behind an open breaker)
        session.execute(update(Job).values(created_at=utcnow() - timedelta(hours=2),
                                           run_after=utcnow() + timedelta(hours=1)))
    with sessions.begin() as session:
        requeue(session, settings, session.scalars(select(Delivery)).one(), again=False, reason="resend")
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status != DeliveryStatus.QUEUED and
                   _jobs_finished(sessions), "the delivery and both jobs")
    assert _delivery(sessions).status == DeliveryStatus.DELIVERED
    assert len(storescp.received_uids()) == 2


def _jobs_finished(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return set(session.scalars(select(Job.status))) == {"succeeded"}
