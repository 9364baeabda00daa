"""Echo and storage against a real node, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from node.db.audit import RetentionDeletion
from node.db.models import AssociationResult, Study, StudyStatus
from node.storage import sha256_of
from tests.helpers.databases import module_database
from tests.helpers.dicom import StudyUIDs, dataset_bytes, dciodvfy_errors, mr_instance, write_study
from tests.helpers.node import CLI, NodeProcess, running_node, stored_files
from tests.helpers.rows import read_rows
from tests.helpers.senders import echoscu, store, storescu
from tests.queue.helpers import wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp(f"store_{request.param}")
    template = request.getfixturevalue("pg_template") if request.param == "postgresql" else None
    with module_database(request.param, folder, template) as url, running_node(folder / "node", url) as node:
        yield node


def test_echo_with_echoscu_and_the_cli(node: NodeProcess) -> None:
    assert echoscu(node).returncode == 0
    result = subprocess.run(
        [str(CLI), "--config", str(node.config), "echo", "127.0.0.1", str(node.port)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


def test_a_study_is_stored_as_files_and_rows(node: NodeProcess, tmp_path: Path) -> None:
    uids, paths = write_study(tmp_path / "study", 25, series_count=2)
    result = storescu(node, paths)
    assert result.returncode == 0, result.stderr

    with node.engine() as engine:
        rows = read_rows(engine)
    study = next(s for s in rows.studies if s.study_instance_uid == uids.study)
    assert study.status == StudyStatus.RECEIVING
    series = [s for s in rows.series if s.study_id == study.id]
    assert sorted(s.series_instance_uid for s in series) == sorted(uids.series)
    assert all(s.modality == "MR" and s.description == "T2 SAG" for s in series)
    instances = [i for i in rows.instances if i.series_id in {s.id for s in series}]
    assert len(instances) == 50
    sources = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}
    for instance in instances:
        series_uid = next(s.series_instance_uid for s in series if s.id == instance.series_id)
        assert instance.path == f"{uids.study}/{series_uid}/{instance.sop_instance_uid}.dcm"
        stored = node.storage_root / instance.path
        assert sha256_of(stored) == instance.sha256
        assert stored.stat().st_size == instance.size_bytes
        assert dataset_bytes(stored) == dataset_bytes(sources[instance.sop_instance_uid])
    association = next(a for a in rows.associations if a.id == instances[0].association_id)
    assert (association.calling_ae, association.called_ae) == ("STORESCU", node.ae_title)
    assert association.peer_address == "127.0.0.1"
    assert association.result == AssociationResult.RELEASED
    assert association.instances_received == 50
    assert association.tls is False
    assert association.ended_at is not None
    assert not [p for p in stored_files(node.storage_root) if p.suffix != ".dcm"]
    assert dciodvfy_errors(node.storage_root / instances[0].path) == []


def test_a_duplicate_is_stored_once_and_answered_success(node: NodeProcess, tmp_path: Path) -> None:
    _, paths = write_study(tmp_path / "study", 3)
    assert storescu(node, paths).returncode == 0
    with node.engine() as engine:
        before = read_rows(engine)
    stored = {i.sop_instance_uid: (i.path, i.sha256) for i in before.instances}

    again = storescu(node, paths)
    assert again.returncode == 0, again.stderr
    statuses = store(node, [dcmread(paths[0])])
    assert [s.Status for s in statuses] == [0x0000]

    with node.engine() as engine:
        after = read_rows(engine)
    assert {i.sop_instance_uid: (i.path, i.sha256) for i in after.instances} == stored
    assert after.associations[-1].instances_received == 0
    for path, sha256 in stored.values():
        assert sha256_of(node.storage_root / path) == sha256
    assert "already stored; answered success" in node.log_text()


def test_a_lossless_re_encoding_is_a_duplicate_and_a_lossy_one_other_content(node: NodeProcess,
                                                                            tmp_path: Path) -> None:
    # a PACS forwarding in JPEG-LS or RLE what it first sent uncompressed: every instance became a
    # new version, and the study was analysed and its results delivered again
    _, paths = write_study(tmp_path / "study", 2, size=64)
    assert storescu(node, paths).returncode == 0
    with node.engine() as engine:
        before = {i.sop_instance_uid: (i.path, i.sha256) for i in read_rows(engine).instances}
    for tool, source, proposal in (("dcmcjpls", paths[0], "-xt"), ("dcmcrle", paths[1], "-xr")):
        encoded = tmp_path / f"{tool}.dcm"
        subprocess.run([tool, str(source), str(encoded)], check=True, capture_output=True, timeout=60)
        sent = storescu(node, [encoded], proposal)
        assert sent.returncode == 0, sent.stderr
    with node.engine() as engine:
        after = {i.sop_instance_uid: (i.path, i.sha256) for i in read_rows(engine).instances}
    assert after == before
    lossy = tmp_path / "near-lossless.dcm"  # other pixels, so other content
    subprocess.run(["dcmcjpls", "+en", "+un", str(paths[0]), str(lossy)], check=True, capture_output=True,
                   timeout=60)  # +un: the same SOP Instance UID, as a forwarding PACS keeps it
    assert storescu(node, [lossy], "-xu").returncode == 0
    with node.engine() as engine:
        versions = [i.version for i in read_rows(engine).instances
                    if i.sop_instance_uid == dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID]
    assert sorted(versions) == [1, 2]


def test_racing_duplicates_store_one_row(node: NodeProcess) -> None:
    uids = StudyUIDs.new()
    dataset = mr_instance(uids.study, uids.series[0], 1)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def send() -> None:
        barrier.wait()
        results.extend(s.Status for s in store(node, [dataset]))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [0x0000] * 4
    with node.engine() as engine:
        rows = read_rows(engine)
    matches = [i for i in rows.instances if i.sop_instance_uid == dataset.SOPInstanceUID]
    assert len(matches) == 1
    assert sha256_of(node.storage_root / matches[0].path) == matches[0].sha256
    folder = node.storage_root / uids.study / uids.series[0]
    assert [p.name for p in folder.iterdir()] == [f"{dataset.SOPInstanceUID}.dcm"]


def test_a_new_instance_reopens_an_analysed_study(node: NodeProcess) -> None:
    uids = StudyUIDs.new()
    assert [s.Status for s in store(node, [mr_instance(uids.study, uids.series[0], 1)])] == [0]
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with node.engine() as engine, Session(engine) as session, session.begin():
        session.execute(
            update(Study).where(Study.study_instance_uid == uids.study)
            .values(status=StudyStatus.ANALYSED, completed_at=long_ago, last_received_at=long_ago)
        )

    assert [s.Status for s in store(node, [mr_instance(uids.study, uids.series[0], 2)])] == [0]

    with node.engine() as engine:
        study = next(s for s in read_rows(engine).studies if s.study_instance_uid == uids.study)
    assert study.status == StudyStatus.RECEIVING
    assert study.completed_at is None
    assert study.last_received_at > long_ago + timedelta(minutes=30)


def test_a_duplicate_resent_leaves_an_analysed_study_analysed(node: NodeProcess) -> None:
    uids = StudyUIDs.new()
    first = mr_instance(uids.study, uids.series[0], 1)
    assert [s.Status for s in store(node, [first])] == [0]
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with node.engine() as engine, Session(engine) as session, session.begin():
        session.execute(
            update(Study).where(Study.study_instance_uid == uids.study)
            .values(status=StudyStatus.ANALYSED, completed_at=long_ago, last_received_at=long_ago)
        )

    assert [s.Status for s in store(node, [first])] == [0]  # the PACS resends the same instance

    with node.engine() as engine:
        study = next(s for s in read_rows(engine).studies if s.study_instance_uid == uids.study)
    assert study.status == StudyStatus.ANALYSED  # nothing new: no second analysis
    assert study.last_received_at < long_ago + timedelta(minutes=30)


def test_an_instance_sent_again_after_retention_deleted_it_is_stored_again(node: NodeProcess) -> None:
    uids = StudyUIDs.new()
    first = mr_instance(uids.study, uids.series[0], 1)
    assert [s.Status for s in store(node, [first])] == [0]
    [path] = node.storage_root.rglob(f"{first.SOPInstanceUID}*.dcm")
    with node.engine() as engine, Session(engine) as session, session.begin():
        study_id = session.scalars(select(Study.id).where(Study.study_instance_uid == uids.study)).one()
        session.execute(update(Study).where(Study.id == study_id).values(status=StudyStatus.ANALYSED))
        # retention, as it leaves a study: the file gone, its rows and a record kept
        session.add(RetentionDeletion(study_id=study_id, at=datetime.now(UTC),
                                      files_deleted=1, bytes_deleted=path.stat().st_size, files_missing=0))
    path.unlink()

    assert [s.Status for s in store(node, [first])] == [0]  # the PACS sends the study again

    [again] = node.storage_root.rglob(f"{first.SOPInstanceUID}*.dcm")
    assert dcmread(again).SOPInstanceUID == first.SOPInstanceUID
    with node.engine() as engine:
        study = next(s for s in read_rows(engine).studies if s.study_instance_uid == uids.study)
    assert study.status == StudyStatus.RECEIVING  # it is analysed again once complete
    wait_until(lambda: "sent again after its stored file was deleted" in node.log_text(),
               "the receiver's log line")


def test_logs_carry_uids_not_patient_data(node: NodeProcess) -> None:
    uids = StudyUIDs.new()
    dataset = mr_instance(uids.study, uids.series[0], 1)
    assert [s.Status for s in store(node, [dataset])] == [0x0000]
    # the association's lines are written once it has ended, a moment after the release
    wait_until(lambda: f"stored 1 instance of study {uids.study}" in node.log_text(), "the association's log")
    text = node.log_text()
    assert "Test^Phantom" not in text and "TEST0001" not in text
