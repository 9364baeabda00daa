"""A success answered is a promise: the instance survives `kill -9` of the node right after it."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from node.db.models import Association, AssociationResult, Study, StudyStatus
from node.storage import sha256_of
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import make_node, stored_files
from tests.helpers.rows import read_rows
from tests.helpers.senders import associate, association
from tests.queue.helpers import wait_until


def test_a_stored_instance_survives_kill_9(database_url: str, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node", database_url)
    uids = StudyUIDs.new()
    first, second = (mr_instance(uids.study, uids.series[0], n) for n in (1, 2))
    node.start()
    try:
        with association(node) as assoc:
            assert assoc.send_c_store(first).Status == 0x0000
            node.kill()  # SIGKILL right after the success, association still open
    finally:
        node.kill()

    with node.engine() as engine:
        rows = read_rows(engine)
    [instance] = rows.instances
    assert instance.sop_instance_uid == first.SOPInstanceUID
    stored = node.storage_root / instance.path
    assert sha256_of(stored) == instance.sha256
    assert stored.stat().st_size == instance.size_bytes
    assert [a.result for a in rows.associations] == [AssociationResult.OPEN]

    # what a receive killed before its success answer leaves behind, long ago
    leftover = stored.parent / f".{second.SOPInstanceUID}.x1y2.part"
    leftover.write_bytes(b"half an instance")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    node.start()
    try:
        deadline = time.monotonic() + 10.0
        while leftover.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not leftover.exists()  # swept at start-up (older than partial_file_max_age)
        with association(node) as assoc:
            assert assoc.send_c_store(first).Status == 0x0000  # a resend after the crash: a duplicate
            assert assoc.send_c_store(second).Status == 0x0000
    finally:
        assert node.terminate() == 0

    with node.engine() as engine:
        rows = read_rows(engine)
    assert sorted(i.sop_instance_uid for i in rows.instances) == sorted(
        [first.SOPInstanceUID, second.SOPInstanceUID])
    for row in rows.instances:
        assert sha256_of(node.storage_root / row.path) == row.sha256
    assert len(stored_files(node.storage_root)) == 2


def test_a_restart_closes_what_this_node_left_open_and_only_that(database_url: str, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node", database_url,
                     {"study": {"quiet_period": 1, "completion_poll_interval": 0.1}})
    uids = StudyUIDs.new()
    node.start()
    try:
        with association(node) as assoc:
            assert assoc.send_c_store(mr_instance(uids.study, uids.series[0], 1)).Status == 0x0000
            node.kill()  # the association's row stays open
    finally:
        node.kill()
    listener = f"{socket.gethostname()}/{node.ae_title}@127.0.0.1:{node.port}"
    others = {  # rows of nodes sharing the database: another host, another listener on this host
        "other host": ("otherhost:4242:abcdef", f"otherhost/{node.ae_title}@127.0.0.1:{node.port}"),
        "other port": (f"{socket.gethostname()}:4242:abcdef",
                       f"{socket.gethostname()}/{node.ae_title}@127.0.0.1:{node.port + 1}"),
    }
    with node.engine() as engine, Session(engine) as session, session.begin():
        [crashed] = session.scalars(select(Association)).all()
        assert (crashed.result, crashed.node_listener) == (AssociationResult.OPEN, listener)
        crashed_id = crashed.node_id
        for node_id, other_listener in others.values():
            session.add(Association(calling_ae="PACS", called_ae=node.ae_title, peer_address="10.0.0.9",
                                    peer_port=104, node_id=node_id, node_listener=other_listener))

    node.start()
    try:
        with node.engine() as engine:
            # the sweep runs before the node logs "listening on", i.e. before start() returned
            rows = {row.node_id: row for row in read_rows(engine).associations}
            assert rows[crashed_id].result == AssociationResult.ABORTED
            assert rows[crashed_id].reason == "node restarted"
            assert rows[crashed_id].ended_at is not None
            for node_id, _ in others.values():
                assert (rows[node_id].result, rows[node_id].ended_at) == (AssociationResult.OPEN, None)
            # its quiet period starts again at the restart: the PACS may be sending it again
            restarted = rows[crashed_id].ended_at
            with Session(engine) as session:
                assert restarted is not None
                assert session.scalars(select(Study.last_received_at)).one() >= restarted

            def complete() -> bool:  # no longer held by the crashed association
                with Session(engine) as session:
                    return session.scalars(select(Study.status)).one() == StudyStatus.COMPLETE

            wait_until(complete, "the study stored before the crash to complete")
    finally:
        assert node.terminate() == 0


def test_a_staged_file_left_while_the_node_runs_is_swept_without_a_restart(database_url: str,
                                                                          tmp_path: Path) -> None:
    # A receive cut off while the node runs (an extra receiver process killed) leaves its
    # staged file; the sweep ran only at start-up, so it stayed until the next restart.
    node = make_node(tmp_path / "node", database_url, {"storage": {"partial_file_max_age": 1}})
    uids = StudyUIDs.new()
    node.start()
    try:
        with association(node) as assoc:
            assert assoc.send_c_store(mr_instance(uids.study, uids.series[0], 1)).Status == 0x0000
        [stored] = stored_files(node.storage_root)
        leftover = stored.parent / f".{uids.series[0]}.9.x1y2.part"
        leftover.write_bytes(b"half an instance")
        os.utime(leftover, (time.time() - 60, time.time() - 60))
        wait_until(lambda: not leftover.exists(), "the running node to sweep the staged file")
        assert stored.exists()
    finally:
        assert node.terminate() == 0


def test_an_aborted_receive_leaves_no_images_outside_the_store(database_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # pynetdicom streams each data set into a temporary file; in a shared /tmp an association
    # aborted mid-transfer left a patient's images there that nothing ever deleted
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared))
    node = make_node(tmp_path / "node", database_url, {"storage": {"partial_file_max_age": 2}})
    uids = StudyUIDs.new()
    big = mr_instance(uids.study, uids.series[0], 1, size=4096)  # 32 MiB, long enough to cut short
    incoming = node.storage_root / ".incoming"
    node.start()
    try:
        assoc = associate(node)
        connection = assoc.dul.socket
        assert connection is not None and connection.socket is not None
        send_pdu = connection.send

        def slowly(data: bytes) -> None:  # so that the connection drops mid-transfer, not after it
            time.sleep(0.02)
            send_pdu(data)

        connection.send = slowly  # type: ignore[method-assign,assignment]
        sending = threading.Thread(target=assoc.send_c_store, args=(big,), daemon=True)
        sending.start()
        wait_until(lambda: any(incoming.glob("tmp*.dcm")) or any(shared.iterdir()),
                   "the data set to stream in", timeout=30)
        connection.socket.shutdown(socket.SHUT_RDWR)  # the sender's host goes away
        sending.join(30)
        assert list(shared.iterdir()) == []
        wait_until(lambda: not any(incoming.glob("tmp*.dcm")), "the partial file to be swept", timeout=30)
    finally:
        assert node.terminate() == 0
    with node.engine() as engine:
        assert read_rows(engine).instances == []


def test_a_database_that_fails_is_answered_out_of_resources(database_url: str, tmp_path: Path) -> None:
    # 0x0110 is no C-STORE status (PS3.4 B.2.3): DCMTK printed "Unknown Status", and a PACS may
    # fail the instance for good instead of sending it again, as a refusal for resources asks
    node = make_node(tmp_path / "node", database_url)
    uids = StudyUIDs.new()
    instance = mr_instance(uids.study, uids.series[0], 1)
    node.start()
    try:
        with node.engine() as engine, engine.begin() as conn:
            for statement in _REFUSE_INSTANCES[engine.dialect.name]:
                conn.execute(text(statement))
        with association(node) as assoc:
            answer = assoc.send_c_store(instance)
        assert answer.Status == 0xA701
        assert answer.ErrorComment == "database unavailable, retry later"
        assert stored_files(node.storage_root) == []
        with node.engine() as engine, engine.begin() as conn:
            on = " ON instances" if engine.dialect.name == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER refuse_instances{on}"))
        with association(node) as assoc:
            assert assoc.send_c_store(instance).Status == 0x0000  # the sender's retry
    finally:
        assert node.terminate() == 0
    with node.engine() as engine:
        assert [i.sop_instance_uid for i in read_rows(engine).instances] == [instance.SOPInstanceUID]


# a database that refuses every instance row, as one out of space or gone read-only does
_REFUSE_INSTANCES = {
    "sqlite": ["CREATE TRIGGER refuse_instances BEFORE INSERT ON instances "
               "BEGIN SELECT RAISE(ABORT, 'refused'); END"],
    "postgresql": ["CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ "
                   "LANGUAGE plpgsql",
                   "CREATE TRIGGER refuse_instances BEFORE INSERT ON instances FOR EACH ROW "
                   "EXECUTE FUNCTION refuse()"],
}


def test_a_study_cut_off_by_a_shutdown_is_not_analysed_the_moment_the_node_is_back(database_url: str,
                                                                                   tmp_path: Path) -> None:
    # SIGTERM aborts what its grace did not see end, closing the row: no row was left open, so the
    # sweep at the restart did not restart the study's quiet period, and the part received before
    # the shutdown was complete and analysed as soon as the node was back
    node = make_node(tmp_path / "node", database_url,
                     {"study": {"quiet_period": 2, "completion_poll_interval": 0.1}}, grace=0.5)
    uids = StudyUIDs.new()
    node.start()
    try:
        with association(node) as assoc:
            assert assoc.send_c_store(mr_instance(uids.study, uids.series[0], 1)).Status == 0x0000
            assert node.terminate() == 0
    finally:
        node.kill()
    with node.engine() as engine:
        [row] = read_rows(engine).associations
        assert (row.result, row.reason) == (AssociationResult.ABORTED, "node shutting down")
    time.sleep(3)  # down for longer than the quiet period
    node.start()
    try:
        with node.engine() as engine, Session(engine) as session:
            # the sweep runs before the node logs "listening on", i.e. before start() returned
            status, last = session.execute(select(Study.status, Study.last_received_at)).one()
            assert status == StudyStatus.RECEIVING
            assert row.ended_at is not None
            assert last.replace(tzinfo=None) >= row.ended_at.replace(tzinfo=None) + timedelta(seconds=3)
    finally:
        assert node.terminate() == 0
