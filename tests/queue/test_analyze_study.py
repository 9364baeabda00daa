"""The analyze_study handler on DICOM series written here: plane and contrast per series."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import ResultObjectRow, RetentionDeletion, StudyEvent, StudyStage
from node.db.engine import session_factory
from node.db.models import AnalysisResult, Instance, Job, Series, Study, StudyStatus, utcnow
from node.pipeline.model import shipped_model
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import ClaimedJob, PermanentJobError, claim, enqueue
from node.queue.worker import JobContext
from node.settings import DeliverySettings, RetentionSettings
from node.storage import (
    InstanceCatalog,
    InstanceKey,
    InstanceRecord,
    InstanceStore,
    RecordOutcome,
    retention,
    sha256_of,
)
from node.tasks.analyze_study import NO_SAGITTAL, AnalyzeStudy, Earlier, finish_study
from tests.helpers.enhanced import enhanced_study_with_split_t2
from tests.queue.helpers import AXIAL, SAGITTAL, add_study, register_series, write_series

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _study(
    engine: Engine, root: Path, series: list[tuple[str, tuple[float, ...]]]
) -> tuple[int, dict[str, str]]:
    study_uid = generate_uid()
    uids = {}
    with session_factory(engine).begin() as session:
        study_id = add_study(session, study_uid, T0, StudyStatus.COMPLETE)
        for kind, orientation in series:
            series_uid, paths = write_series(root, study_uid, kind, orientation)
            register_series(session, root, study_id, series_uid, paths)
            uids[f"{kind} {'sag' if orientation == SAGITTAL else 'ax'}"] = series_uid
    return study_id, uids


def _run(engine: Engine, root: Path, study_id: int) -> ClaimedJob:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=1)
        job = claim(session, "w", [ANALYZE_STUDY], timedelta(minutes=1))
    assert job is not None
    AnalyzeStudy(root, root / "results", shipped_model, DeliverySettings())(job, JobContext(sessions, "w"))
    return job


def test_series_get_plane_and_sequence(engine: Engine, tmp_path: Path) -> None:
    study_id, uids = _study(
        engine,
        tmp_path,
        [("T1", SAGITTAL), ("T2", SAGITTAL), ("STIR", SAGITTAL), ("T1C", SAGITTAL), ("T2", AXIAL)],
    )
    _run(engine, tmp_path, study_id)
    with session_factory(engine)() as session:
        found = {
            s.series_instance_uid: (s.plane, s.sequence, s.classification_reason)
            for s in session.scalars(select(Series))
        }
        study = session.get_one(Study, study_id)
        assert (study.status, study.skip_reason) == (StudyStatus.ANALYSED, None)
        [result] = session.scalars(select(AnalysisResult)).all()
        assert result.outcome == "analysed"
        assert set(result.findings) >= {"study_instance_uid", "series_used", "levels", "study"}
        assert result.findings["series_used"]["T1"] == uids["T1 sag"]
    assert (
        tmp_path / "results" / result.findings["study_instance_uid"] / str(result.job_id) / "findings.json"
    ).is_file()
    assert {name: found[uid][:2] for name, uid in uids.items()} == {
        "T1 sag": ("sagittal", "T1"),
        "T2 sag": ("sagittal", "T2"),
        "STIR sag": ("sagittal", "STIR"),
        "T1C sag": ("sagittal", "T1C"),
        "T2 ax": ("axial", "T2"),
    }
    assert all(reason for _, _, reason in found.values())
    assert "TI 150 ms" in str(found[uids["STIR sag"]][2])


def test_study_without_sagittal_series_is_skipped(engine: Engine, tmp_path: Path) -> None:
    study_id, _ = _study(engine, tmp_path, [("T2", AXIAL)])
    job = _run(engine, tmp_path, study_id)
    job_again = _run(engine, tmp_path, study_id)  # the study stays skipped; nothing changes
    with session_factory(engine)() as session:
        study = session.get_one(Study, study_id)
        [result] = session.scalars(select(AnalysisResult)).all()
    assert (study.status, study.skip_reason) == (StudyStatus.SKIPPED, NO_SAGITTAL)
    assert (result.outcome, result.reason, result.job_id) == ("skipped", NO_SAGITTAL, job.id)
    assert result.findings["series"][0]["plane"] == "axial"
    assert job_again.id != job.id


def test_a_job_run_again_after_recording_its_result_leaves_the_result_as_it_was(engine: Engine,
                                                                                tmp_path: Path) -> None:
    # Its worker killed between the commit and marking the job done: the job's lease
    # expires and it runs again. Writing its objects again, it named its own SR as the
    # SR's predecessor: the recorded bytes changed under their SHA-256, and delivery
    # refused the SR for good.
    study_id, _ = _study(engine, tmp_path, [("T1", SAGITTAL)])
    job = _run(engine, tmp_path, study_id)
    sessions = session_factory(engine)
    with sessions() as session:
        rows = session.scalars(select(ResultObjectRow)).all()
    written = {tmp_path / "results" / row.path: row.sha256 for row in rows}
    assert written and all(sha256_of(path) == sha for path, sha in written.items())

    handler = AnalyzeStudy(tmp_path, tmp_path / "results", shipped_model, DeliverySettings())
    handler(job, JobContext(sessions, "w2"))

    assert {path: sha256_of(path) for path in written} == written
    with sessions() as session:
        assert len(session.scalars(select(AnalysisResult)).all()) == 1
        assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED


def _claimed_axial_study(engine: Engine, root: Path) -> tuple[int, sessionmaker[Session], ClaimedJob]:
    """A study of one axial series, and its analysis job claimed by worker w1."""
    study_id, _ = _study(engine, root, [("T2", AXIAL)])
    sessions = session_factory(engine)
    with sessions.begin() as session:
        enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=1)
        job = claim(session, "w1", [ANALYZE_STUDY], timedelta(minutes=1))
    assert job is not None
    return study_id, sessions, job


def test_a_job_whose_lease_expired_before_a_reanalysis_was_queued_leaves_the_answer_to_it(
        engine: Engine, tmp_path: Path) -> None:
    # Its worker stalled past its lease, so `reanalyze` queued a new job (it points at a
    # running job only while that job's lease holds). The stalled job then finished first
    # and recorded its result; the requested analysis found the study answered and
    # recorded nothing.
    study_id, sessions, stalled = _claimed_axial_study(engine, tmp_path)
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == stalled.id).values(lease_expires_at=T0))
        requested = enqueue(session, ANALYZE_STUDY, study_id, {"requested_by": "reanalyze"}, max_attempts=1)
    handler = AnalyzeStudy(tmp_path, tmp_path / "results", shipped_model, DeliverySettings())

    handler(stalled, JobContext(sessions, "w1"))
    with sessions() as session:
        assert session.scalars(select(AnalysisResult)).all() == []
        assert session.get_one(Study, study_id).status == StudyStatus.COMPLETE

    with sessions.begin() as session:
        job = claim(session, "w2", [ANALYZE_STUDY], timedelta(minutes=1))
    assert job is not None and job.id == requested.id
    handler(job, JobContext(sessions, "w2"))
    with sessions() as session:
        [result] = session.scalars(select(AnalysisResult)).all()
        assert result.job_id == requested.id
        assert session.get_one(Study, study_id).status == StudyStatus.SKIPPED


def test_a_stalled_job_finishing_while_reanalyze_queues_its_job_records_nothing(engine: Engine,
                                                                             tmp_path: Path) -> None:
    # On PostgreSQL the check for a newer job ran on the snapshot of the statement that waited
    # for reanalyze's lock on the study: it did not see the job reanalyze was committing.
    study_id, sessions, stalled = _claimed_axial_study(engine, tmp_path)
    with sessions() as session:
        version = session.get_one(Study, study_id).content_version
    recorded: list[bool] = []

    def finish() -> None:
        with sessions.begin() as session:
            recorded.append(finish_study(session, stalled, StudyStatus.SKIPPED, None, version))

    finisher = threading.Thread(target=finish)
    with sessions.begin() as session:  # as `reanalyze` does
        session.scalars(select(Study).where(Study.id == study_id).with_for_update()).one()
        enqueue(session, ANALYZE_STUDY, study_id, {"requested_by": "reanalyze"}, max_attempts=1)
        session.flush()
        finisher.start()
        time.sleep(0.5)
    finisher.join()
    assert recorded == [False]
    with sessions() as session:
        assert session.get_one(Study, study_id).status == StudyStatus.COMPLETE


def test_study_receiving_again_is_left_for_the_next_analysis(engine: Engine, tmp_path: Path) -> None:
    study_id, _ = _study(engine, tmp_path, [("T2", AXIAL)])
    with session_factory(engine).begin() as session:
        session.get_one(Study, study_id).status = StudyStatus.RECEIVING
    _run(engine, tmp_path, study_id)
    with session_factory(engine)() as session:
        assert session.get_one(Study, study_id).status == StudyStatus.RECEIVING
        assert session.scalars(select(Series.sequence)).all() == [None]


def test_missing_study_is_a_permanent_error(engine: Engine, tmp_path: Path) -> None:
    with session_factory(engine).begin() as session:
        study_id = add_study(session, "1.2.3", T0, StudyStatus.COMPLETE)
    job = ClaimedJob(
        id=1,
        kind=ANALYZE_STUDY,
        study_id=study_id + 1,
        study_uid=None,
        payload={},
        attempt=1,
        max_attempts=1,
        worker_id="w",
        lease_expires_at=T0,
    )
    with pytest.raises(PermanentJobError, match="does not exist"):
        AnalyzeStudy(tmp_path, tmp_path / "results", shipped_model, DeliverySettings())(
            job, JobContext(session_factory(engine), "w")
        )


def test_missing_file_raises_so_the_job_is_retried(engine: Engine, tmp_path: Path) -> None:
    study_id, _ = _study(engine, tmp_path, [("T1", SAGITTAL)])
    for path in tmp_path.rglob("*.dcm"):
        path.unlink()
    with pytest.raises(FileNotFoundError):
        _run(engine, tmp_path, study_id)


def _break_pixel_data(root: Path, series_uid: str) -> None:
    """Cut one file's pixel data short: its headers still classify, its pixels cannot be read."""
    path = sorted(root.rglob(f"{series_uid}/*.dcm"))[1]
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[:50]
    ds.save_as(path)


def test_a_chosen_series_that_cannot_be_read_is_recorded_and_said(engine: Engine, tmp_path: Path) -> None:
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL), ("T2", SAGITTAL)])
    _break_pixel_data(tmp_path, uids["T1 sag"])
    _run(engine, tmp_path, study_id)
    with session_factory(engine)() as session:
        study = session.get_one(Study, study_id)
        [result] = session.scalars(select(AnalysisResult)).all()
    impression = result.findings["study"]["impression"]
    assert "Sagittal T1 series 1 'SAG T1 TSE' could not be used: " in impression
    assert "cannot decode the pixel data" in impression
    assert (study.status, result.outcome) == (StudyStatus.ANALYSED, "analysed")
    assert result.findings["series_used"]["T1"] is None
    assert result.findings["series_used"]["T2"] == uids["T2 sag"]
    with session_factory(engine)() as session:
        reasons = {uid: why for uid, why in session.execute(
            select(Series.series_instance_uid, Series.unusable_reason))}
    assert reasons[uids["T2 sag"]] is None
    assert "cannot decode the pixel data" in str(reasons[uids["T1 sag"]])
    assert "no T1 marrow signal assessment" in str(reasons[uids["T1 sag"]])


def test_a_study_whose_only_sagittal_series_cannot_be_read_is_skipped_with_the_reason(
        engine: Engine, tmp_path: Path) -> None:
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL)])
    _break_pixel_data(tmp_path, uids["T1 sag"])
    _run(engine, tmp_path, study_id)
    with session_factory(engine)() as session:
        study = session.get_one(Study, study_id)
        [result] = session.scalars(select(AnalysisResult)).all()
    assert study.status == StudyStatus.SKIPPED
    assert "sagittal T1 series 1 'SAG T1 TSE' could not be used" in str(study.skip_reason)
    assert result.reason == study.skip_reason
    with session_factory(engine)() as session:
        reason = session.scalars(select(Series.unusable_reason)).one()
    assert "cannot decode the pixel data" in str(reason)


def test_the_analysis_reads_the_current_version_of_a_resent_instance(engine: Engine, tmp_path: Path) -> None:
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL)])
    intact_path = sorted(tmp_path.rglob(f"{uids['T1 sag']}/*.dcm"))[1]
    intact = intact_path.read_bytes()
    _break_pixel_data(tmp_path, uids["T1 sag"])  # what was stored first was corrupt
    sessions = session_factory(engine)
    with sessions.begin() as session:
        study_uid = session.get_one(Study, study_id).study_instance_uid
        session.execute(update(Instance).where(Instance.sop_instance_uid == intact_path.stem)
                        .values(sha256=sha256_of(intact_path), size_bytes=intact_path.stat().st_size))
    key = InstanceKey(study_uid, uids["T1 sag"], intact_path.stem)
    store = InstanceStore(tmp_path, min_free_bytes=0, max_instance_bytes=10**8)
    with store.stage(io.BytesIO(intact), key) as staged:  # the sender re-sends the intact original
        outcome = InstanceCatalog(engine).record(
            InstanceRecord(key, MRImageStorage, ExplicitVRLittleEndian, modality="MR"), staged)
    assert outcome is RecordOutcome.NEW_VERSION
    with sessions.begin() as session:  # the quiet period passes
        session.get_one(Study, study_id).status = StudyStatus.COMPLETE
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        [result] = session.scalars(select(AnalysisResult)).all()
        reason = session.scalars(select(Series.unusable_reason)).one()
    assert result.findings["series_used"]["T1"] == uids["T1 sag"]
    assert "could not be used" not in result.findings["study"]["impression"]
    assert reason is None


def test_a_study_sent_again_after_retention_is_stored_and_analysed_again(engine: Engine,
                                                                        tmp_path: Path) -> None:
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL)])
    sent = {path: path.read_bytes() for path in sorted(tmp_path.rglob("*.dcm"))}
    sessions = session_factory(engine)
    with sessions.begin() as session:  # retention, as it leaves a study: files gone, rows and a record kept
        study_uid = session.get_one(Study, study_id).study_instance_uid
        session.add(RetentionDeletion(study_id=study_id, at=utcnow(), files_deleted=len(sent),
                                      bytes_deleted=sum(map(len, sent.values())), files_missing=0))
    for path in sent:
        path.unlink()
    with pytest.raises(PermanentJobError, match="deleted by retention: send the study again"):
        _run(engine, tmp_path, study_id)  # not retried as if storage were catching up

    _send_again(engine, tmp_path, study_uid, uids["T1 sag"], sent)  # restored, not duplicates: files gone
    assert len(list(tmp_path.rglob("*.dcm"))) == len(sent)
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        [result] = session.scalars(select(AnalysisResult)).all()
        assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED
    assert result.findings["series_used"]["T1"] == uids["T1 sag"]


def test_a_study_whose_stored_file_was_lost_is_analysed_once_it_is_sent_again(engine: Engine,
                                                                              tmp_path: Path) -> None:
    """Not deleted by retention but gone (a disk replaced, a hand's rm): the resend is the only way back."""
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL)])
    sent = {path: path.read_bytes() for path in sorted(tmp_path.rglob("*.dcm"))}
    next(iter(sent)).unlink()
    with pytest.raises(FileNotFoundError):
        _run(engine, tmp_path, study_id)
    sessions = session_factory(engine)
    with sessions() as session:
        study_uid = session.get_one(Study, study_id).study_instance_uid
    outcomes = _resend(engine, tmp_path, study_uid, uids["T1 sag"], sent)  # the whole study again
    assert outcomes == [RecordOutcome.RESTORED] + [RecordOutcome.DUPLICATE] * (len(sent) - 1)
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED
        [result] = session.scalars(select(AnalysisResult)).all()
    assert result.findings["series_used"]["T1"] == uids["T1 sag"]


def _resend(engine: Engine, root: Path, study_uid: str, series_uid: str,
            sent: dict[Path, bytes]) -> list[RecordOutcome]:
    """The PACS sends these instances again; then their study's quiet period passes."""
    store = InstanceStore(root, min_free_bytes=0, max_instance_bytes=10**8)
    outcomes = []
    for path, data in sent.items():
        key = InstanceKey(study_uid, series_uid, path.stem)
        with store.stage(io.BytesIO(data), key) as staged:
            record = InstanceRecord(key, MRImageStorage, ExplicitVRLittleEndian, modality="MR")
            outcomes.append(InstanceCatalog(engine).record(record, staged))
    with session_factory(engine).begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == study_uid)).one()
        assert study.status == StudyStatus.RECEIVING
        study.status = StudyStatus.COMPLETE
    return outcomes


def _send_again(engine: Engine, root: Path, study_uid: str, series_uid: str, sent: dict[Path, bytes]) -> None:
    assert set(_resend(engine, root, study_uid, series_uid, sent)) == {RecordOutcome.RESTORED}


def test_part_of_a_study_sent_again_after_retention_does_not_replace_the_whole_study_s_result(
        engine: Engine, tmp_path: Path) -> None:
    study_id, uids = _study(engine, tmp_path, [("T1", SAGITTAL), ("T2", SAGITTAL)])
    _run(engine, tmp_path, study_id)
    sent = {uid: {p: p.read_bytes() for p in sorted(tmp_path.rglob(f"{uid}/*.dcm"))} for uid in uids.values()}
    sessions = session_factory(engine)
    with sessions.begin() as session:
        study = session.get_one(Study, study_id)
        assert study.status == StudyStatus.ANALYSED
        study_uid = study.study_instance_uid
        session.add(RetentionDeletion(study_id=study_id, at=utcnow(), files_deleted=6, bytes_deleted=1,
                                      files_missing=0))
    for files in sent.values():
        for path in files:
            path.unlink()
    _send_again(engine, tmp_path, study_uid, uids["T2 sag"], sent[uids["T2 sag"]])  # the T2 only
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        [first] = session.scalars(select(AnalysisResult)).all()
        assert (first.superseded_by_id, first.findings["series_used"]["T1"]) == (None, uids["T1 sag"])
        assert session.get_one(Study, study_id).status == StudyStatus.ANALYSED
        [event] = session.scalars(select(StudyEvent).where(StudyEvent.stage == StudyStage.ANALYSIS_WITHHELD))
        assert event.detail is not None and event.detail.startswith(
            "3 of 6 images of the study were deleted by retention and not sent again")

    _send_again(engine, tmp_path, study_uid, uids["T1 sag"], sent[uids["T1 sag"]])  # now the whole study
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        results = session.scalars(select(AnalysisResult).order_by(AnalysisResult.id)).all()
        assert [r.superseded_by_id for r in results] == [results[1].id, None]
        assert results[1].findings["series_used"]["T1"] == uids["T1 sag"]


def test_an_instance_stored_while_retention_deletes_is_kept_and_analysed(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study_id, _ = _study(engine, tmp_path, [("T1", SAGITTAL)])
    old_files = sorted(tmp_path.rglob("*.dcm"))
    sessions = session_factory(engine)
    with sessions.begin() as session:
        study = session.get_one(Study, study_id)
        study.status = StudyStatus.ANALYSED
        study_uid = study.study_instance_uid

    def delivered_long_ago(session: Session, delete_after: timedelta, now: datetime,
                           only: int | None = None) -> list[tuple[int, str]]:
        analysed = session.get_one(Study, study_id).status == StudyStatus.ANALYSED
        return [(study_id, study_uid)] if analysed and only in (None, study_id) else []

    store = InstanceStore(tmp_path, min_free_bytes=0, max_instance_bytes=10**8)
    late = InstanceKey(study_uid, generate_uid(), generate_uid())
    deleting = retention.Retention._delete

    def store_meanwhile(self: retention.Retention, uid: str, paths: list[str], dry_run: bool) -> Any:
        # the PACS sends a new series while retention is unlinking the study's files
        with store.stage(io.BytesIO(old_files[0].read_bytes()), late) as staged:
            record = InstanceRecord(late, MRImageStorage, ExplicitVRLittleEndian, modality="MR")
            assert InstanceCatalog(engine).record(record, staged) is RecordOutcome.STORED
        return deleting(self, uid, paths, dry_run)

    monkeypatch.setattr(retention, "due_studies", delivered_long_ago)
    monkeypatch.setattr(retention.Retention, "_delete", store_meanwhile)
    [deleted] = retention.Retention(RetentionSettings(enabled=True), tmp_path, sessions).run_once()
    assert deleted.files_deleted == len(old_files)
    assert not any(path.exists() for path in old_files)
    with sessions() as session:
        kept = session.execute(
            select(Instance.sop_instance_uid, Instance.path).join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == study_id,
                   ~retention.deleted_by_retention(Series.study_id, Instance.received_at))).all()
        assert session.get_one(Study, study_id).status == StudyStatus.RECEIVING
    assert [uid for uid, _ in kept] == [late.sop_uid]  # stored after the deletion: not counted as deleted
    assert (tmp_path / kept[0].path).exists()


def test_a_job_of_another_database_with_the_same_id_gets_other_uids() -> None:
    """A node set up again numbers its jobs from 1: its results must not reuse the UIDs a PACS holds."""
    queued = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    first = Earlier((), queued)
    assert first.analysis_key(1) == Earlier((), queued).analysis_key(1)  # the same job run again
    assert first.analysis_key(1) != Earlier((), queued + timedelta(microseconds=1)).analysis_key(1)
    assert first.analysis_key(1) != first.analysis_key(2)
    assert first.created == datetime(2026, 3, 1, 12, 0, 0)  # DICOM times: whole seconds


def test_the_handler_names_its_patients_values_private(engine: Engine, tmp_path: Path) -> None:
    # should the job fail after reading them, the worker keeps them out of its error and log
    study_id, _ = _study(engine, tmp_path, [("T2", AXIAL)])  # nothing sagittal: no analysis to wait for
    for path in tmp_path.rglob("*.dcm"):
        ds = dcmread(path)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "SMITH^JOHN", "A1234", "19630102"
        ds.save_as(path)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        enqueue(session, ANALYZE_STUDY, study_id, {}, max_attempts=1)
        job = claim(session, "w", [ANALYZE_STUDY], timedelta(minutes=1))
    assert job is not None
    context = JobContext(sessions, "w")
    AnalyzeStudy(tmp_path, tmp_path / "results", shipped_model, DeliverySettings())(job, context)
    assert {"SMITH^JOHN", "SMITH", "JOHN", "A1234", "19630102", "1963-01-02"} <= context.private


def test_an_analysis_after_a_skipped_one_names_the_last_sr_as_its_predecessor(engine: Engine,
                                                                              tmp_path: Path) -> None:
    # analysed, then sent again with no sagittal series (skipped), then whole again: the skipped
    # result had superseded the first, and the new SR named no predecessor, leaving the PACS two
    # unlinked SRs of one study
    study_id, _ = _study(engine, tmp_path, [("T1", SAGITTAL), ("T2", AXIAL)])
    sessions = session_factory(engine)

    def only(plane: tuple[float, ...]) -> None:
        """The study sent again with only the series in ``plane`` (every series: ``()``), and complete."""
        with sessions.begin() as session:
            for instance in session.scalars(select(Instance)):
                ds = dcmread(tmp_path / instance.path, stop_before_pixels=True)
                instance.is_current = tuple(ds.ImageOrientationPatient) == plane or plane == ()
            study = session.get_one(Study, study_id)
            study.status, study.content_version = StudyStatus.COMPLETE, study.content_version + 1

    def sr_of(result: AnalysisResult) -> ResultObjectRow:
        with sessions() as session:
            return session.scalars(select(ResultObjectRow).where(
                ResultObjectRow.analysis_result_id == result.id, ResultObjectRow.kind == "sr")).one()

    _run(engine, tmp_path, study_id)
    only(AXIAL)
    _run(engine, tmp_path, study_id)
    only(())
    _run(engine, tmp_path, study_id)
    with sessions() as session:
        first, skipped, last = session.scalars(select(AnalysisResult).order_by(AnalysisResult.id)).all()
    assert (first.outcome, skipped.outcome, last.outcome) == ("analysed", "skipped", "analysed")
    assert first.superseded_by_id == skipped.id
    report = dcmread(tmp_path / "results" / sr_of(last).path)
    [named] = report.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert named.ReferencedSOPInstanceUID == sr_of(first).sop_instance_uid


def test_a_primary_series_of_several_enhanced_objects_fails_at_once_with_the_reason(
        engine: Engine, tmp_path: Path) -> None:
    # the result objects cannot reference it, at any attempt: retrying it failed the study only later
    dicom = enhanced_study_with_split_t2(tmp_path / "phantom")
    study_uid = str(dcmread(next(dicom.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    with session_factory(engine).begin() as session:
        study_id = add_study(session, study_uid, T0, StudyStatus.COMPLETE)
        for folder in sorted(p for p in dicom.iterdir() if p.is_dir()):
            headers = {path: dcmread(path, stop_before_pixels=True) for path in folder.glob("*.dcm")}
            # stored under their SOP Instance UIDs, as the node stores them
            paths = sorted(path.rename(folder / f"{ds.SOPInstanceUID}.dcm") for path, ds in headers.items())
            series_uid = str(next(iter(headers.values())).SeriesInstanceUID)
            register_series(session, tmp_path, study_id, series_uid, paths)
    with pytest.raises(PermanentJobError, match="stored as 2 multi-frame objects"):
        _run(engine, tmp_path, study_id)
