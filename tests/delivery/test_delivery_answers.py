"""A destination that answers is up: refusals, rejections and changed settings, against real peers.

A refused SOP class, an A-ASSOCIATE-RJ or an object kind the destination no
longer takes is an answer, not an outage: the circuit breaker stays closed,
and what retrying cannot change ends the delivery at once, in words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import tests.delivery.helpers
from node.cli import main
from node.db.audit import (
    BreakerState,
    Delivery,
    DeliveryAttempt,
    DeliveryAttemptObject,
    DeliveryStatus,
    DestinationBreaker,
    ResultObjectRow,
    StudyEvent,
)
from node.db.models import Job, JobEvent
from node.delivery import requeue
from node.delivery.routes import resolve
from node.delivery.sender import ObjectToSend, Sender
from node.results import ResultObject
from tests.delivery.helpers import OUR_AE, Storescp, delivering, delivery_settings, seed_analysis
from tests.delivery.objects import write_objects
from tests.helpers.node import running_node, write_config
from tests.helpers.orthanc import OrthancProcess, orthanc_binary, running_orthanc
from tests.helpers.segmentation import write_segmentation
from tests.queue.helpers import wait_until

SEG_REFUSED = "Segmentation Storage not accepted by the destination"
# A DCMTK profile that stores the SR and the key image but not Segmentation Storage.
NO_SEG_PROFILE = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[NoSeg]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = Comprehensive3DSRStorage\\Uncompressed
PresentationContext3 = SecondaryCaptureImageStorage\\Uncompressed

[[Profiles]]
[NoSeg]
PresentationContexts = NoSeg
"""


def _with_segmentation(folder: Path, study_uid: str) -> list[ResultObject]:
    sr, key_image = write_objects(folder, study_uid)
    return [sr, write_segmentation(folder, study_uid), key_image]


@pytest.fixture
def with_seg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded analyses write an SR, a SEG and a key image, as the node does."""
    monkeypatch.setattr(tests.delivery.helpers, "write_objects", _with_segmentation)


@pytest.fixture
def noseg(storescp: Storescp, tmp_path: Path) -> Storescp:
    profile = tmp_path / "noseg.cfg"
    profile.write_text(NO_SEG_PROFILE, encoding="ascii")
    storescp.start("-xf", str(profile), "NoSeg")
    return storescp


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancProcess]:
    if orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc)")
    with running_orthanc(tmp_path / "orthanc", node_ae_title=OUR_AE, node_port=11112) as peer:
        yield peer


def _delivery(sessions: sessionmaker[Session]) -> Delivery:
    with sessions() as session:
        return session.scalars(select(Delivery)).one()


def _attempts(sessions: sessionmaker[Session]) -> list[tuple[str, str | None]]:
    with sessions() as session:
        attempts = session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id))
        return [(a.outcome, a.error) for a in attempts]


def _breaker(sessions: sessionmaker[Session], name: str = "pacs") -> tuple[str, int]:
    """The destination's breaker state and failures; closed and none when it never had a row."""
    with sessions() as session:
        row = session.get(DestinationBreaker, name)
        return (BreakerState.CLOSED, 0) if row is None else (row.state, row.consecutive_failures)


def _uids(sessions: sessionmaker[Session], *kinds: str) -> list[str]:
    with sessions() as session:
        return sorted(session.scalars(select(ResultObjectRow.sop_instance_uid)
                                      .where(ResultObjectRow.kind.in_(kinds))))


def _object_errors(sessions: sessionmaker[Session], kind: str) -> list[tuple[int | None, str | None]]:
    with sessions() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(DeliveryAttemptObject.dimse_status, DeliveryAttemptObject.error)
            .join(ResultObjectRow, ResultObjectRow.id == DeliveryAttemptObject.result_object_id)
            .where(ResultObjectRow.kind == kind).order_by(DeliveryAttemptObject.id))]


def _events(sessions: sessionmaker[Session], stage: str) -> list[str]:
    with sessions() as session:
        return [d or "" for d in session.scalars(select(StudyEvent.detail).where(StudyEvent.stage == stage)
                                                 .order_by(StudyEvent.id))]


def test_a_refused_sop_class_ends_the_delivery_at_once_and_leaves_the_breaker_closed(
        sessions: sessionmaker[Session], noseg: Storescp, tmp_path: Path, with_seg: None) -> None:
    # one connection failure would open the breaker and hold every delivery to the PACS back
    settings = delivery_settings(noseg.port, retry={"max_attempts": 4},
                                 breaker={"failure_threshold": 1, "open_for": 600})
    seeded = seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    assert _attempts(sessions) == [("partial", SEG_REFUSED)]
    assert _delivery(sessions).last_error == SEG_REFUSED
    assert noseg.received_uids() == _uids(sessions, "sr", "key_image")  # the rest still went
    assert _object_errors(sessions, "seg") == [(None, SEG_REFUSED)]
    assert _breaker(sessions) == (BreakerState.CLOSED, 0)
    with sessions() as session:
        job = session.get(Job, seeded.job_ids[0])
        assert job is not None and job.status == "failed"
    # Sent again unchanged (resend without fixing the PACS) only the SEG is proposed, and
    # pynetdicom aborts an association none of whose contexts was accepted: still an answer.
    with sessions.begin() as session:
        requeue(session, settings, session.scalars(select(Delivery)).one(), again=False, reason="resend")
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter again")
    assert _attempts(sessions)[1:] == [("failed", SEG_REFUSED)]
    assert _breaker(sessions) == (BreakerState.CLOSED, 0)
    assert noseg.store_requests() == 2


def test_resend_after_the_destination_stopped_taking_a_kind_delivers_the_rest(
        sessions: sessionmaker[Session], noseg: Storescp, database_url: str, tmp_path: Path,
        with_seg: None, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    takes_all = delivery_settings(noseg.port, retry={"max_attempts": 1})
    seed_analysis(sessions, takes_all, results, generate_uid())
    with delivering(sessions, takes_all, results):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    # The administrator takes the SEG off what this PACS gets, and resends the dead letters.
    fixed = {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": noseg.port,
             "objects": ["sr", "key_image"]}
    config = write_config(tmp_path / "node.toml", {
        "database": {"url": database_url},
        "storage": {"root": str(tmp_path / "storage"), "results": str(results)},
        "delivery": {"destinations": [fixed]},
    })
    capsys.readouterr()
    assert main(["--config", str(config), "resend", "--dead", "--format", "json"]) == 0
    assert [row["was"] for row in json.loads(capsys.readouterr().out)] == ["dead"]
    with delivering(sessions, delivery_settings(noseg.port, destinations=[fixed]), results):
        wait_until(lambda: _delivery(sessions).status != DeliveryStatus.QUEUED, "the resent delivery")
    assert _delivery(sessions).status == DeliveryStatus.DELIVERED
    assert len(_attempts(sessions)) == 1  # nothing was left to send: the SEG was not tried again
    (delivered,) = _events(sessions, "delivered")
    assert "seg not sent: pacs no longer takes them" in delivered


def test_a_kind_the_destination_no_longer_takes_is_not_sent_and_recorded_so(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path, with_seg: None) -> None:
    storescp.start()
    results = tmp_path / "results"
    seed_analysis(sessions, delivery_settings(storescp.port), results, generate_uid())  # queued with a SEG
    now = delivery_settings(storescp.port, destinations=[
        {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": storescp.port,
         "objects": ["sr", "key_image"]}])
    with delivering(sessions, now, results):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DELIVERED, "delivery")
    assert storescp.received_uids() == _uids(sessions, "sr", "key_image")
    assert _attempts(sessions) == [("delivered", None)]
    assert _object_errors(sessions, "seg") == [
        (None, "not sent: pacs no longer takes seg objects (its objects setting)")]
    (delivered,) = _events(sessions, "delivered")
    assert "seg not sent" in delivered


def test_a_called_ae_title_the_destination_does_not_know_is_a_dead_letter_at_once(
        sessions: sessionmaker[Session], orthanc: OrthancProcess, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = delivery_settings(orthanc.dicom_port, retry={"max_attempts": 4},
                                 breaker={"failure_threshold": 1, "open_for": 600}, destinations=[
        {"name": "pacs", "ae_title": "NOTORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}])
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with caplog.at_level(logging.INFO), delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    said = (f"association with pacs (NOTORTHANC at 127.0.0.1:{orthanc.dicom_port}) rejected permanently: "
            "called AE title not recognised")
    assert _attempts(sessions) == [("failed", said)]
    assert _delivery(sessions).last_error == said
    assert _breaker(sessions) == (BreakerState.CLOSED, 0)
    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR and r.name.startswith("node.delivery")]
    assert any("to pacs" in message and said in message for message in errors), errors
    assert "Phantom" not in caplog.text and "PHANTOM" not in caplog.text  # UIDs only, no patient data


def test_a_calling_ae_title_the_destination_does_not_know_is_a_dead_letter_at_once(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # another Lumbar Sentinel node as the destination: it takes only the callers it lists
    with running_node(tmp_path / "peer", f"sqlite:///{tmp_path / 'peer.db'}",
                      {"dicom": {"allowed_callers": [{"ae_title": "SOMEONE"}]}}) as peer:
        settings = delivery_settings(peer.port, retry={"max_attempts": 4},
                                     breaker={"failure_threshold": 1, "open_for": 600}, destinations=[
            {"name": "pacs", "ae_title": peer.ae_title, "host": "127.0.0.1", "port": peer.port}])
        seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
        with delivering(sessions, settings, tmp_path / "results"):
            wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    ((outcome, error),) = _attempts(sessions)
    assert outcome == "failed"
    assert error is not None and error.endswith("rejected permanently: calling AE title not recognised")
    assert _breaker(sessions) == (BreakerState.CLOSED, 0)


def test_other_rejections_are_retried_on_the_delivery_backoff_not_the_breaker(
        sessions: sessionmaker[Session], storescp: Storescp, tmp_path: Path) -> None:
    storescp.start("--refuse")  # DCMTK: rejected permanently, no reason given
    settings = delivery_settings(storescp.port, retry={"max_attempts": 2, "backoff_base": 0.05},
                                 breaker={"failure_threshold": 1, "open_for": 600})
    seed_analysis(sessions, settings, tmp_path / "results", generate_uid())
    with delivering(sessions, settings, tmp_path / "results"):
        wait_until(lambda: _delivery(sessions).status == DeliveryStatus.DEAD, "dead letter")
    said = f"association with pacs (DEST at 127.0.0.1:{storescp.port}) rejected permanently: no reason given"
    assert _attempts(sessions) == [("failed", said), ("failed", said)]
    assert _breaker(sessions) == (BreakerState.CLOSED, 0)
    with sessions() as session:  # the breaker never held it back
        waits = session.scalars(select(JobEvent.id).where(JobEvent.detail.contains("circuit breaker"))).all()
    assert waits == []


def test_every_rejection_is_told_as_one_however_fast_the_peer_closes(
        orthanc: OrthancProcess, tmp_path: Path) -> None:
    # pynetdicom 3.0 may see the connection closed after an A-ASSOCIATE-RJ before it
    # looks at the answer; about one association in fifty with a local Orthanc.
    settings = delivery_settings(orthanc.dicom_port, destinations=[
        {"name": "pacs", "ae_title": "NOTORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}])
    route = resolve(settings, "pacs", None)
    assert route is not None
    (sr, _) = write_objects(tmp_path / "objects", generate_uid())
    sender = Sender(OUR_AE, settings.connect_timeout, settings.dimse_timeout)
    answers: dict[tuple[str | None, bool, bool], int] = {}
    for _ in range(400):
        outcome = sender.store(route, [ObjectToSend(1, sr.path)])
        key = (outcome.association_error, outcome.answered, outcome.final)
        answers[key] = answers.get(key, 0) + 1
    said = (f"association with pacs (NOTORTHANC at 127.0.0.1:{orthanc.dicom_port}) rejected permanently: "
            "called AE title not recognised")
    assert answers == {(said, True, True): 400}
    assert sender.echo(route) is None  # and to the breaker's probe it is up
