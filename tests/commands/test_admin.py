"""Admin commands and audit views answer an administrator's questions, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from node.cli import main
from node.db.audit import Delivery, DeliveryStatus, RetentionDeletion, StudyEvent
from node.db.engine import create_db_engine
from node.db.migrate import upgrade
from node.db.models import (
    AnalysisResult,
    Association,
    AssociationStudy,
    Instance,
    Job,
    JobStatus,
    Series,
    Study,
    StudyStatus,
    utcnow,
)
from node.delivery import record_findings
from node.queue.jobs import claim, enqueue
from tests.delivery.helpers import Storescp, delivering, delivery_settings, seed_analysis
from tests.helpers.node import free_port, write_config
from tests.queue.helpers import wait_until


@dataclass(frozen=True)
class Scenario:
    config: Path
    database_url: str
    storage: Path
    results: Path
    delivered: str  # suspicious, delivered
    dead: str  # not suspicious, its delivery a dead letter
    unanalysed: str  # received, never analysed


def _status(sessions: sessionmaker[Session], uid: str) -> str:
    with sessions() as session:
        return session.scalars(select(Delivery.status).join(Study, Study.id == Delivery.study_id)
                               .where(Study.study_instance_uid == uid)).one()


@pytest.fixture
def scenario(sessions: sessionmaker[Session], storescp: Storescp, database_url: str,
             tmp_path: Path) -> Scenario:
    storage, results = tmp_path / "storage", tmp_path / "results"
    storescp.start()
    up = delivery_settings(storescp.port)
    delivered = seed_analysis(sessions, up, results, generate_uid(), storage_root=storage).study_uid
    with delivering(sessions, up, results):
        wait_until(lambda: _status(sessions, delivered) == DeliveryStatus.DELIVERED, "delivery")
    down = delivery_settings(free_port(), retry={"max_attempts": 1})
    dead = seed_analysis(sessions, down, results, generate_uid(), suspicious=False,
                         storage_root=storage).study_uid
    with delivering(sessions, down, results):
        wait_until(lambda: _status(sessions, dead) == DeliveryStatus.DEAD, "dead letter")
    unanalysed = generate_uid()
    with sessions.begin() as session:
        now = utcnow()
        session.add(Study(study_instance_uid=unanalysed, first_received_at=now, last_received_at=now,
                          status=StudyStatus.COMPLETE, completed_at=now))
    config = write_config(tmp_path / "node.toml", {
        "database": {"url": database_url},
        "storage": {"root": str(storage), "results": str(results)},
        "delivery": {"destinations": [
            {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": storescp.port}]},
    })
    return Scenario(config, database_url, storage, results, delivered, dead, unanalysed)


def cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    capsys.readouterr()
    assert main(["--config", str(config), *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_studies_and_results_commands(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    studies = {row["study_instance_uid"]: row for row in cli(capsys, scenario.config, "studies")}
    assert set(studies) == {scenario.delivered, scenario.dead, scenario.unanalysed}
    assert (studies[scenario.delivered]["delivery"], studies[scenario.delivered]["suspicious"]) == \
        ("delivered", "present")
    assert (studies[scenario.dead]["delivery"], studies[scenario.dead]["suspicious"]) == ("dead", "absent")
    assert (studies[scenario.unanalysed]["status"], studies[scenario.unanalysed]["analysed_at"]) == \
        ("complete", None)
    suspicious = cli(capsys, scenario.config, "results", "--suspicious", "--since", "1d")
    assert [(r["study_instance_uid"], r["suspicious_levels"]) for r in suspicious] == \
        [(scenario.delivered, "L3")]
    assert {r["study_instance_uid"] for r in cli(capsys, scenario.config, "results")} == \
        {scenario.delivered, scenario.dead}
    assert cli(capsys, scenario.config, "results", "--since", "2999-01-01") == []
    for fmt in ("csv", "table"):
        assert main(["--config", str(scenario.config), "studies", "--format", fmt]) == 0
    assert "study_instance_uid" in capsys.readouterr().out.splitlines()[0]


def test_instance_counts_are_of_current_instances_not_of_their_versions(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    with sessions.begin() as session:  # the study's one instance, re-sent with other content: two versions
        current = session.scalars(select(Instance).join(Series, Series.id == Instance.series_id)
                                  .join(Study, Study.id == Series.study_id)
                                  .where(Study.study_instance_uid == scenario.delivered)).one()
        current.version = 2
        session.add(Instance(series_id=current.series_id, sop_instance_uid=current.sop_instance_uid,
                             version=1, is_current=False, sop_class_uid=current.sop_class_uid,
                             transfer_syntax_uid=current.transfer_syntax_uid, path=current.path + ".v1",
                             size_bytes=current.size_bytes, sha256="0" * 64, received_at=current.received_at))
    studies = {row["study_instance_uid"]: row for row in cli(capsys, scenario.config, "studies")}
    assert studies[scenario.delivered]["instances"] == 1
    series = cli(capsys, scenario.config, "study", scenario.delivered)["series"]
    assert [s["instances"] for s in series] == [1]


def test_study_command_tells_the_whole_history(scenario: Scenario,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    study = cli(capsys, scenario.config, "study", scenario.delivered)
    assert study["study"][0]["status"] == "analysed"
    assert [a["calling_ae"] for a in study["associations"]] == ["STORESCU"]
    assert [(s["plane"], s["sequence"], s["instances"]) for s in study["series"]] == [("sagittal", "T2", 1)]
    assert [a["outcome"] for a in study["analyses"]] == ["analysed"]
    assert {f["level"]: f["suspicious_for_malignancy"] for f in study["findings"]} == \
        {"L2": "absent", "L3": "present"}
    assert sorted(o["kind"] for o in study["result_objects"]) == ["key_image", "sr"]
    assert [(d["destination"], d["status"], d["acknowledged"]) for d in study["deliveries"]] == \
        [("pacs", "delivered", 2)]
    assert [a["outcome"] for a in study["attempts"]] == ["delivered"]
    assert [o["dimse_status"] for o in study["attempt_objects"]] == ["0x0000", "0x0000"]
    stages = [h["stage"] for h in study["history"]]
    for stage in ("received", "association", "series", "analysis analysed", "job deliver_results succeeded",
                  "delivery attempt", "analysed", "delivered"):
        assert stage in stages
    assert stages.index("received") < stages.index("delivered")
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "study", "1.2.3.4"]) == 1


def test_study_command_lists_an_association_that_only_sent_duplicates(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # a PACS re-sending the study, its association still open, held the study back: `study`
    # did not list it (it stored no instance row), and the administrator could not see why
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        resend = Association(calling_ae="ORTHANC", called_ae="LSENTINEL", peer_address="10.0.0.7",
                             peer_port=4242)
        session.add(resend)
        session.flush()
        session.add(AssociationStudy(association_id=resend.id, study_id=study.id))
    listed = cli(capsys, scenario.config, "study", scenario.delivered)["associations"]
    assert [(a["calling_ae"], a["result"]) for a in listed] == [("STORESCU", "released"), ("ORTHANC", "open")]


def test_views_answer_the_questions(scenario: Scenario, sessions: sessionmaker[Session]) -> None:
    def uids(view: str) -> list[str]:
        with sessions() as session:
            return sorted(session.scalars(text(f"SELECT study_instance_uid FROM {view}")))

    assert uids("v_suspicious_studies_this_week") == [scenario.delivered]
    assert uids("v_failed_deliveries") == [scenario.dead]
    assert uids("v_studies_not_analysed") == [scenario.unanalysed]
    assert uids("v_studies_not_delivered") == [scenario.dead]
    with sessions() as session:
        timings = {row.study_instance_uid: row
                   for row in session.execute(text("SELECT * FROM v_study_timings"))}
        history = session.execute(text("SELECT stage FROM v_study_history WHERE study_instance_uid = :uid"),
                                  {"uid": scenario.dead}).scalars().all()
    assert timings[scenario.delivered].delivered_at is not None
    assert timings[scenario.dead].delivered_at is None and timings[scenario.dead].analysed_at is not None
    assert "dead_letter" in history
    # an analysis older than seven days is not "this week"
    with sessions.begin() as session:
        session.execute(update(AnalysisResult).values(created_at=utcnow() - timedelta(days=8)))
    assert uids("v_suspicious_studies_this_week") == []
    assert uids("v_current_results") == sorted([scenario.delivered, scenario.dead])


def test_studies_shows_an_analysis_that_failed_for_good(scenario: Scenario, sessions: sessionmaker[Session],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with sessions.begin() as session:
        study_id = session.scalars(
            select(Study.id).where(Study.study_instance_uid == scenario.unanalysed)).one()
        job = enqueue(session, "analyze_study", study_id, {}, max_attempts=1)
        job.status, job.last_error = JobStatus.FAILED, "the images cannot be read"
    studies = {row["study_instance_uid"]: row for row in cli(capsys, scenario.config, "studies")}
    # `complete` alone reads as "analysis queued"
    assert (studies[scenario.unanalysed]["status"], studies[scenario.unanalysed]["analysis_job"]) == (
        "complete", "failed")


def test_a_table_piped_keeps_each_row_on_one_line(scenario: Scenario,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # an administrator greps or pages the output: a study's UID and its status on one line
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "studies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if scenario.delivered in line)
    assert "analysed" in row and "delivered" in row


def test_resend_delivers_the_dead_letter(scenario: Scenario, sessions: sessionmaker[Session],
                                         storescp: Storescp, capsys: pytest.CaptureFixture[str]) -> None:
    resent = cli(capsys, scenario.config, "resend", "--dead")
    assert [(r["study_instance_uid"], r["was"]) for r in resent] == [(scenario.dead, "dead")]
    assert cli(capsys, scenario.config, "resend", "--dead") == []  # queued now, no longer dead
    with delivering(sessions, delivery_settings(storescp.port), scenario.results):
        wait_until(lambda: _status(sessions, scenario.dead) == DeliveryStatus.DELIVERED, "resent delivery")
    assert len(storescp.received_uids()) == 4  # two objects of each study, each once
    assert storescp.store_requests() == 4
    # an acknowledged delivery is not sent again by resend (unless --again)
    assert cli(capsys, scenario.config, "resend", "--study", scenario.delivered) == []
    again = cli(capsys, scenario.config, "resend", "--study", scenario.delivered, "--again")
    assert [r["was"] for r in again] == ["delivered"]


def test_resend_refuses_an_unknown_destination_or_study(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "resend", "--destination", "pacz", "--dead"]) == 2
    said = capsys.readouterr().err
    assert "no destination 'pacz' is configured" in said and "configured: pacs" in said
    assert main(["--config", str(scenario.config), "resend", "--study", "1.2.3.4"]) == 1
    assert "no study 1.2.3.4" in capsys.readouterr().err
    assert _status(sessions, scenario.dead) == DeliveryStatus.DEAD


@pytest.mark.parametrize(("command", "code"), [
    (["study", "1.2.3.4"], 1), (["reanalyze", "1.2.3.4"], 1), (["resend", "--study", "1.2.3.4"], 1),
    (["resend", "--destination", "pacz", "--dead"], 2), (["resend"], 2)])
def test_what_a_command_refuses_goes_to_stderr_not_into_its_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], code: int) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    engine.dispose()
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{tmp_path / 'node.db'}"}})
    capsys.readouterr()
    assert main(["--config", str(config), *command, "--format", "json"]) == code
    said = capsys.readouterr()
    assert said.out == "" and said.err.startswith(f"{command[0]}: ") and len(said.err.splitlines()) == 1


def test_resend_leaves_a_delivery_whose_destination_was_removed(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    config = write_config(tmp_path / "removed.toml", {
        "database": {"url": scenario.database_url},
        "storage": {"root": str(scenario.storage), "results": str(scenario.results)},
    })
    capsys.readouterr()
    assert main(["--config", str(config), "resend", "--dead", "--format", "json"]) == 0
    said = capsys.readouterr()
    assert json.loads(said.out) == []
    assert "destination 'pacs' is no longer configured" in said.err
    assert _status(sessions, scenario.dead) == DeliveryStatus.DEAD


def test_reanalyze_queues_an_analysis(scenario: Scenario, sessions: sessionmaker[Session],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (row,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    with sessions() as session:
        job = session.get(Job, row["job_id"])
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        assert job is not None
        assert (job.kind, job.status, job.study_id) == ("analyze_study", "queued", study.id)
        assert study.status == "complete"
    (again,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    assert again["job_id"] == row["job_id"]
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "reanalyze", "1.2.3.4"]) == 1


def test_reanalyze_of_a_failed_study_clears_why_it_failed(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        study.status, study.skip_reason = StudyStatus.FAILED, "the analysis failed: a file is gone"
    cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    with sessions() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        assert (study.status, study.skip_reason) == (StudyStatus.COMPLETE, None)


def test_reanalyze_while_an_analysis_runs_points_at_it(scenario: Scenario, sessions: sessionmaker[Session],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (queued,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    with sessions.begin() as session:
        running = claim(session, "worker-1", ["analyze_study"], timedelta(minutes=5))
    assert running is not None and running.id == queued["job_id"]
    # a second job would find the study answered by the running one and record nothing
    (again,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    assert again["job_id"] == running.id and "running now" in again["note"]
    with sessions() as session:
        assert session.scalars(select(Job.id).where(Job.kind == "analyze_study")).all() == [running.id]


def _with_retention(scenario: Scenario, delete_after: int) -> None:
    """The scenario's node configured with retention on, ``delete_after`` seconds."""
    write_config(scenario.config, {
        "database": {"url": scenario.database_url},
        "storage": {"root": str(scenario.storage), "results": str(scenario.results)},
        "storage.retention": {"enabled": True, "delete_after": delete_after},
    })


def test_retention_deletes_images_of_delivered_studies_only(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    files_before = sorted(p for p in scenario.storage.rglob("*.dcm"))
    assert len(files_before) == 2
    # delete_after 30 days (default): nothing is due yet
    assert cli(capsys, scenario.config, "retention", "--force") == []
    _with_retention(scenario, delete_after=0)
    dry = cli(capsys, scenario.config, "retention", "--dry-run")
    assert [r["study_instance_uid"] for r in dry] == [scenario.delivered]
    assert sorted(p for p in scenario.storage.rglob("*.dcm")) == files_before
    deleted = cli(capsys, scenario.config, "retention")
    assert [(r["study_instance_uid"], r["files_deleted"]) for r in deleted] == [(scenario.delivered, 1)]
    remaining = list(scenario.storage.rglob("*.dcm"))
    assert len(remaining) == 1 and scenario.dead in str(remaining[0])
    assert cli(capsys, scenario.config, "retention") == []  # recorded: not again
    # its images are gone: a new analysis is refused with what to do, not queued to fail
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "reanalyze", scenario.delivered]) == 3
    assert "deleted by retention" in capsys.readouterr().err
    with sessions() as session:
        assert session.scalars(select(Job).where(Job.kind == "analyze_study")).all() == []
        assert session.scalars(select(Study.status).where(Study.study_instance_uid == scenario.delivered)
                               ).one() == StudyStatus.ANALYSED
    with sessions() as session:
        assert session.scalar(select(RetentionDeletion.files_deleted)) == 1
        assert "images_deleted" in session.scalars(select(StudyEvent.stage)).all()
    # audit rows and result objects stay
    assert len(cli(capsys, scenario.config, "study", scenario.delivered)["result_objects"]) == 2
    assert all(p.exists() for p in scenario.results.rglob("*.dcm"))


def test_reanalyze_refuses_a_study_only_part_of_which_was_sent_again_after_retention(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # it looked only at the last image received: a series sent again made it queue an analysis,
    # which was withheld again (part of the study is not the study)
    _with_retention(scenario, delete_after=0)
    assert [r["files_deleted"] for r in cli(capsys, scenario.config, "retention")] == [1]
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        old = session.scalars(select(Instance).join(Series).where(Series.study_id == study.id)).one()
        late = Series(study_id=study.id, series_instance_uid=generate_uid(), modality="MR")
        session.add(late)
        session.flush()
        session.add(Instance(series_id=late.id, sop_instance_uid=generate_uid(),
                             sop_class_uid=old.sop_class_uid, transfer_syntax_uid=old.transfer_syntax_uid,
                             path="late.dcm", size_bytes=1, sha256="0" * 64, received_at=utcnow()))
        study.last_received_at = utcnow()
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "reanalyze", scenario.delivered]) == 3
    assert "1 image(s) of study" in capsys.readouterr().err
    with sessions() as session:
        assert session.scalars(select(Job).where(Job.kind == "analyze_study")).all() == []


def test_reanalyze_points_at_a_queued_analysis_rather_than_a_running_one_it_makes_stale(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # new content arrived while a job ran: the job queued for it answers, and the running one's
    # result is not recorded; reanalyze named the running one
    (first,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    with sessions.begin() as session:
        running = claim(session, "worker-1", ["analyze_study"], timedelta(minutes=5))
        assert running is not None and running.id == first["job_id"]
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        newer = enqueue(session, "analyze_study", study.id, {}, max_attempts=1,
                        now=utcnow() + timedelta(minutes=1)).id
    (again,) = cli(capsys, scenario.config, "reanalyze", scenario.delivered)
    assert (again["job_id"], again["note"]) == (newer, "an analysis was already queued: it runs now")


def test_retention_finishes_a_deletion_that_a_stopped_node_left_recorded(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # The deletion is recorded before the files are deleted: a node stopped between the two
    # left the study's images on disk for good, its record saying 0 files deleted.
    _with_retention(scenario, delete_after=0)
    long_ago = utcnow() - timedelta(hours=3)
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        study.last_received_at = long_ago
        session.execute(update(Instance).values(received_at=long_ago))
        session.add(RetentionDeletion(study_id=study.id, at=long_ago + timedelta(minutes=1), files_deleted=0,
                                      bytes_deleted=0, files_missing=0))
    dry = cli(capsys, scenario.config, "retention", "--dry-run")
    assert [(r["study_instance_uid"], r["files_deleted"]) for r in dry] == [(scenario.delivered, 1)]
    assert len(list(scenario.storage.rglob("*.dcm"))) == 2
    deleted = cli(capsys, scenario.config, "retention")
    assert [(r["study_instance_uid"], r["files_deleted"]) for r in deleted] == [(scenario.delivered, 1)]
    remaining = list(scenario.storage.rglob("*.dcm"))
    assert len(remaining) == 1 and scenario.dead in str(remaining[0])
    with sessions() as session:
        assert session.scalars(select(RetentionDeletion.files_deleted)).all() == [1]
        assert session.scalars(select(StudyEvent.stage)
                               .where(StudyEvent.stage == "images_deleted")).all() == ["images_deleted"]
    assert cli(capsys, scenario.config, "retention") == []  # finished: not again


def test_retention_keeps_what_arrived_within_delete_after_and_counts_each_file_once(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # part of a cleaned study sent again (withheld until the rest arrives) was deleted at the next
    # run, before the rest could arrive; and each run counted the files earlier runs had deleted
    # as "already gone" again
    _with_retention(scenario, delete_after=3600)
    long_ago = utcnow() - timedelta(hours=3)
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        study.last_received_at = long_ago
        session.execute(update(Instance).values(received_at=long_ago))
        session.execute(update(Delivery).where(Delivery.study_id == study.id)
                        .values(delivered_at=long_ago + timedelta(minutes=1)))
        study_id = study.id
    assert [(r["files_deleted"], r["files_missing"]) for r in cli(capsys, scenario.config, "retention")] == [
        (1, 0)]
    resent = scenario.storage / "resent.dcm"
    resent.write_bytes(b"the image sent again")
    with sessions.begin() as session:
        old = session.scalars(select(Instance).join(Series).where(Series.study_id == study_id)).one()
        old.is_current = False
        session.add(Instance(series_id=old.series_id, sop_instance_uid=old.sop_instance_uid, version=2,
                             sop_class_uid=old.sop_class_uid, transfer_syntax_uid=old.transfer_syntax_uid,
                             path=resent.name, size_bytes=20, sha256="0" * 64, received_at=utcnow()))
        session.get_one(Study, study_id).last_received_at = utcnow()
    assert cli(capsys, scenario.config, "retention") == []  # arrived within delete_after: kept
    assert resent.exists()
    with sessions.begin() as session:  # an hour and more later
        session.execute(update(RetentionDeletion).values(at=long_ago + timedelta(minutes=30)))
        session.execute(update(Instance).where(Instance.path == resent.name)
                        .values(received_at=long_ago + timedelta(hours=1)))
        session.get_one(Study, study_id).last_received_at = long_ago + timedelta(hours=1)
    assert [(r["files_deleted"], r["files_missing"]) for r in cli(capsys, scenario.config, "retention")] == [
        (1, 0)]
    assert not resent.exists()


def test_retention_with_no_storage_folder_deletes_and_records_nothing(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    # e.g. run from another folder than the node's, with the default relative storage.root
    write_config(scenario.config, {
        "database": {"url": scenario.database_url},
        "storage": {"root": str(scenario.storage / "elsewhere"), "results": str(scenario.results)},
        "storage.retention": {"enabled": True, "delete_after": 0},
    })
    capsys.readouterr()
    assert main(["--config", str(scenario.config), "retention"]) == 2
    assert "is not a folder: nothing deleted or recorded" in capsys.readouterr().err
    with sessions() as session:
        assert session.scalars(select(RetentionDeletion)).all() == []
    assert len(list(scenario.storage.rglob("*.dcm"))) == 2
    # a folder that exists but holds none of the study's files (an unmounted volume, another
    # folder's var/storage): the study is not recorded as cleaned either
    (scenario.storage / "elsewhere").mkdir()
    assert cli(capsys, scenario.config, "retention", "--dry-run") == []  # the preview says what it would do
    assert cli(capsys, scenario.config, "retention") == []
    with sessions() as session:
        assert session.scalars(select(RetentionDeletion)).all() == []


def test_documented_queries_run(scenario: Scenario, sessions: sessionmaker[Session]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text(encoding="utf-8")
    queries = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert len(queries) >= 7
    answers: dict[str, list[Any]] = {}
    with sessions() as session:
        for query in queries:
            query = query.replace("1.2.840.113619.2.1.1", scenario.delivered).strip().rstrip(";")
            answers[query] = list(session.execute(text(query)))
    history = next(rows for query, rows in answers.items() if "FROM v_study_history" in query)
    assert {"received", "association", "series", "delivered"} <= {row.stage for row in history}
    flagged = next(rows for query, rows in answers.items() if "JOIN level_findings" in query)
    assert [(row.study_instance_uid, row.level) for row in flagged] == [(scenario.delivered, "L3")]


def test_results_show_the_current_analysis_unless_asked_for_all(
        scenario: Scenario, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == scenario.delivered)).one()
        old = session.scalars(select(AnalysisResult).where(AnalysisResult.study_id == study.id)).one()
        findings = dict(old.findings, study=dict(old.findings["study"], suspicious_for_malignancy="absent",
                                                 suspicious_level_count=0))
        new = AnalysisResult(study_id=study.id, outcome="analysed", algorithm_version="test-2",
                             findings=findings)
        session.add(new)
        session.flush()
        old.superseded_by_id = new.id
        record_findings(session, new)
    assert cli(capsys, scenario.config, "results", "--suspicious") == []
    flagged = cli(capsys, scenario.config, "results", "--suspicious", "--all-versions")
    assert [(r["algorithm_version"], r["superseded_by"]) for r in flagged] == [("test", new.id)]
    analyses = cli(capsys, scenario.config, "study", scenario.delivered)["analyses"]
    assert [(a["algorithm_version"], a["superseded_by_id"]) for a in analyses] == \
        [("test", new.id), ("test-2", None)]
