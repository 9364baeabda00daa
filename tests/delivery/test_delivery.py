"""Delivery to a real DCMTK storescp: sent, retried with growing delays, never sent twice, dead-lettered."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import (
    BreakerState,
    Delivery,
    DeliveryAttempt,
    DeliveryAttemptObject,
    DeliveryItem,
    DeliveryStatus,
    DestinationBreaker,
    LevelFinding,
    ResultObjectRow,
    StudyEvent,
)
from node.db.models import Job, JobEvent
from node.delivery import last_reported_objects, publish_results
from node.results import ResultKind, ResultObject
from tests.delivery.helpers import Storescp, analysed_again, delivering, delivery_settings, seed_analysis
from tests.delivery.objects import write_objects
from tests.helpers.tls import make_pki
from tests.queue.helpers import wait_until


def _delivery(sessions: sessionmaker[Session]) -> Delivery:
    with sessions() as session:
        return session.scalars(select(Delivery)).one()


def _attempts(sessions: sessionmaker[Session]) -> list[DeliveryAttempt]:
    with sessions() as session:
        return list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


def test_results_reach_storescp_and_statuses_are_recorded(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port)
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    assert len(seeded.job_ids) == 1
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery")
    with sessions() as session:
        objects = list(session.scalars(select(ResultObjectRow).order_by(ResultObjectRow.id)))
        assert storescp.received_uids() == sorted(o.sop_instance_uid for o in objects)
        assert {o.kind for o in objects} == {"sr", "key_image"}
        items = list(session.scalars(select(DeliveryItem)))
        assert [(i.dimse_status, i.acknowledged_at is not None) for i in items] == [(0, True), (0, True)]
        attempt = session.scalars(select(DeliveryAttempt)).one()
        assert (attempt.outcome, attempt.error, attempt.retry_at) == ("delivered", None, None)
        statuses = session.scalars(select(DeliveryAttemptObject.dimse_status)).all()
        assert statuses == [0, 0]
        levels = {row.level: row for row in session.scalars(select(LevelFinding))}
        assert levels["L3"].suspicious_for_malignancy == "present" and levels["L3"].genant_grade == 2
        assert levels["L2"].t1_marrow_disc_ratio is None
        stages = session.scalars(select(StudyEvent.stage).order_by(StudyEvent.id)).all()
        assert stages == ["analysed", "delivered"]
        delivered_at = session.execute(text(
            "SELECT delivered_at FROM v_study_timings WHERE study_instance_uid = :uid"),
            {"uid": seeded.study_uid}).scalar_one()
        assert delivered_at is not None
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "succeeded"


def test_destination_down_retries_with_growing_delays_then_delivers(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    settings = delivery_settings(storescp.port, retry={"max_attempts": 8, "backoff_base": 0.2})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: len(_attempts(sessions)) >= 3, "three failed attempts")
        storescp.start()
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery")
    attempts = _attempts(sessions)
    failed = [a for a in attempts if a.outcome == "failed"]
    assert len(failed) >= 3 and attempts[-1].outcome == "delivered"
    assert all("could not associate" in (a.error or "") for a in failed)
    # exact delays (no jitter): base * 2^(attempt-1)
    delays = [round((a.retry_at - a.finished_at).total_seconds(), 3) for a in failed if a.retry_at]
    assert delays[:3] == [0.2, 0.4, 0.8]
    with sessions() as session:
        deferrals = session.scalars(select(JobEvent.event).where(JobEvent.event == "deferred")).all()
    assert len(deferrals) == len(failed)
    assert storescp.store_requests() == 2


def test_acknowledged_objects_are_not_sent_again(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port, retry={"backoff_base": 0.5})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    key_image = tmp_path / "results" / seeded.study_uid / "1" / "key_image.dcm"
    hidden = key_image.with_suffix(".away")
    key_image.rename(hidden)
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: len(_attempts(sessions)) >= 1, "first attempt")
        hidden.rename(key_image)
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery")
    first, second = _attempts(sessions)
    assert (first.outcome, second.outcome) == ("partial", "delivered")
    with sessions() as session:
        sent = [(row.attempt_id, row.dimse_status) for row in session.scalars(
            select(DeliveryAttemptObject).order_by(DeliveryAttemptObject.id))]
    assert sent == [(first.id, 0), (first.id, None), (second.id, 0)]
    assert storescp.store_requests() == 2
    assert len(storescp.received_uids()) == 2


def test_last_attempt_makes_a_dead_letter(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    settings = delivery_settings(storescp.port, retry={"max_attempts": 3, "backoff_base": 0.1})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    assert [a.outcome for a in _attempts(sessions)] == ["failed"] * 3
    assert _attempts(sessions)[-1].retry_at is None
    with sessions() as session:
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "failed"
        dead = session.execute(text(
            "SELECT study_instance_uid, destination, attempts, objects_unacknowledged"
            " FROM v_failed_deliveries"
        )).all()
    assert [tuple(row) for row in dead] == [(seeded.study_uid, "pacs", 3, 2)]


def test_a_destination_down_for_longer_than_give_up_after_makes_a_dead_letter(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    # the breaker opens after one failure and its waits are not attempts: only the age limit ends it
    settings = delivery_settings(storescp.port, retry={"max_attempts": 50, "give_up_after": 1.5},
                                 breaker={"failure_threshold": 1, "open_for": 0.3})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    delivery = _delivery(sessions)
    assert delivery.attempts < 50
    assert "not delivered within" in (delivery.last_error or "")
    with sessions() as session:
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "failed"
        stages = session.scalars(select(StudyEvent.stage).order_by(StudyEvent.id)).all()
    assert stages[-1] == "dead_letter"


def test_a_destination_removed_from_the_configuration_makes_a_dead_letter(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    published = delivery_settings(storescp.port)
    seeded = seed_analysis(sessions, published, tmp_path / "results", generate_uid())
    now_configured = delivery_settings(storescp.port, destinations=[])
    with delivering(sessions, now_configured, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    assert "no longer configured" in (_delivery(sessions).last_error or "")
    assert _attempts(sessions) == []
    with sessions() as session:
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "failed"


def _failed_probes(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(session.scalars(
            select(JobEvent.id).where(JobEvent.detail.contains("probe of pacs failed"))).all())


def test_breaker_opens_and_a_half_open_echo_probe_closes_it(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    settings = delivery_settings(storescp.port, retry={"max_attempts": 20, "backoff_base": 0.05},
                                 breaker={"failure_threshold": 2, "open_for": 0.5})

    def breaker() -> DestinationBreaker | None:
        with sessions() as session:
            return session.get(DestinationBreaker, "pacs")

    def statuses() -> list[str]:
        with sessions() as session:
            return list(session.scalars(select(Delivery.status)))

    for _ in range(3):
        seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: (b := breaker()) is not None and b.state == BreakerState.OPEN, "open breaker")
        # while open, the deliveries wait without attempts: the PACS is not hammered;
        # failed C-ECHO probes keep it open
        wait_until(lambda: _failed_probes(sessions) >= 2, "failed probes")
        assert len(_attempts(sessions)) == 2
        storescp.start()
        wait_until(lambda: statuses() == [DeliveryStatus.DELIVERED] * 3, "deliveries")
    final = breaker()
    assert final is not None and (final.state, final.consecutive_failures) == (BreakerState.CLOSED, 0)
    assert sorted(a.outcome for a in _attempts(sessions)) == ["delivered"] * 3 + ["failed"] * 2
    assert len(storescp.received_uids()) == 6


def test_delivers_over_tls_with_a_client_certificate(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    storescp.start("+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca_cert), "-rc")
    destination = {"name": "pacs", "ae_title": "DEST", "host": "localhost", "port": storescp.port,
                   "tls": {"enabled": True, "ca_file": pki.ca_cert, "cert_file": pki.client_cert,
                           "key_file": pki.client_key}}
    settings = delivery_settings(storescp.port, destinations=[destination])
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery over TLS")
    assert len(storescp.received_uids()) == 2


def test_tls_destination_refusing_our_certificate_is_a_failed_attempt(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    storescp.start("+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca_cert), "-rc")
    destination = {"name": "pacs", "ae_title": "DEST", "host": "localhost", "port": storescp.port,
                   "tls": {"enabled": True, "ca_file": pki.ca_cert}}
    settings = delivery_settings(storescp.port, retry={"max_attempts": 1}, destinations=[destination])
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    assert storescp.received_uids() == []


def test_a_missing_tls_file_is_named_in_the_failed_attempt(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    missing = tmp_path / "pacs-ca.pem"
    destination = {"name": "pacs", "ae_title": "DEST", "host": "localhost", "port": storescp.port,
                   "tls": {"enabled": True, "ca_file": missing}}
    settings = delivery_settings(storescp.port, retry={"max_attempts": 1}, destinations=[destination])
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    (attempt,) = _attempts(sessions)
    assert attempt.error is not None
    assert f"cannot set up TLS: ca_file {missing}: no such file" in attempt.error


def test_a_destination_whose_host_cannot_be_resolved_is_a_failed_attempt_naming_it(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    destination = {"name": "pacs", "ae_title": "DEST", "host": "pacs.invalid", "port": 104}
    settings = delivery_settings(104, retry={"max_attempts": 1}, destinations=[destination])
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    (attempt,) = _attempts(sessions)
    assert attempt.error is not None and "cannot resolve host 'pacs.invalid'" in attempt.error


def test_results_go_back_to_the_sending_ae(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port, destinations=[], return_to_sender={
        "enabled": True, "objects": ["sr"],
        "routes": [{"ae_title": "MODALITY1", "host": "127.0.0.1", "port": storescp.port,
                    "called_ae_title": "DEST"}]})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid(), calling_ae="MODALITY1")
    # a study from a caller without a route is not sent back
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid(), calling_ae="OTHER")
    delivery = _delivery(sessions)
    assert (delivery.destination, delivery.return_to_ae) == ("return:MODALITY1", "MODALITY1")
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery back")
    with sessions() as session:
        sr_uid = session.scalars(select(ResultObjectRow.sop_instance_uid).where(
            ResultObjectRow.kind == "sr",
            ResultObjectRow.analysis_result_id == seeded.analysis_result_id)).one()
    assert storescp.received_uids() == [sr_uid]


def test_publishing_twice_adds_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = delivery_settings(1)
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with sessions.begin() as session:
        objects = [ResultObject(ResultKind(row.kind), tmp_path / "results" / row.path, row.sop_class_uid,
                                row.sop_instance_uid, row.series_instance_uid, row.sha256)
                   for row in session.scalars(select(ResultObjectRow))]
        assert publish_results(session, settings, seeded.analysis_result_id, objects,
                               results_root=tmp_path / "results") == []
        assert last_reported_objects(session, seeded.study_id, tmp_path / "results") == tuple(objects)
    with sessions() as session:
        assert len(session.scalars(select(ResultObjectRow)).all()) == 2
        assert len(session.scalars(select(LevelFinding)).all()) == 2
        assert len(session.scalars(select(Delivery)).all()) == 1
        assert session.scalars(select(ResultObjectRow.path)).all() == [
            f"{seeded.study_uid}/1/sr.dcm", f"{seeded.study_uid}/1/key_image.dcm"]


def test_a_result_file_changed_since_it_was_written_is_not_sent(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port, retry={"max_attempts": 1})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    key_image = tmp_path / "results" / seeded.study_uid / "1" / "key_image.dcm"
    key_image.write_bytes(key_image.read_bytes() + b"\0\0")
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    (attempt,) = _attempts(sessions)
    assert attempt.outcome == "partial" and "changed since it was written" in (attempt.error or "")
    with sessions() as session:
        sr_uid = session.scalars(select(ResultObjectRow.sop_instance_uid)
                                 .where(ResultObjectRow.kind == "sr")).one()
    assert storescp.received_uids() == [sr_uid]


def test_a_rerun_does_not_send_objects_the_destination_already_has(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start()
    settings = delivery_settings(storescp.port)
    results = tmp_path / "results"
    seeded = seed_analysis(sessions, settings, results, generate_uid())
    with delivering(sessions, settings, results):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "first delivery")
    with sessions() as session:
        first = last_reported_objects(session, seeded.study_id, results)

    def rerun(objects: list[ResultObject]) -> list[int]:
        with sessions.begin() as session:
            _, new = analysed_again(session, seeded)
            return publish_results(session, settings, new.id, objects, results_root=results)

    # the same job again (lost lease): the same objects, byte for byte
    assert rerun(list(first)) == []
    # a new key image beside the same SR: only the key image is sent
    (changed,) = write_objects(tmp_path / "other", seeded.study_uid)[1:]
    jobs = rerun([first[0], changed])
    assert len(jobs) == 1
    with delivering(sessions, settings, results):
        wait_until(lambda: _statuses(sessions) == ["delivered"] * 3, "deliveries")
    assert storescp.store_requests() == 3
    assert changed.sop_instance_uid in storescp.received_uids()


def _statuses(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Delivery.status).order_by(Delivery.id)))
