"""The durable writer and the catalog, without a network."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID
from sqlalchemy import Connection, Engine, Row, event, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from node.db.engine import session_factory
from node.db.models import Instance, Series, Study, StudyStatus
from node.storage import (
    CatalogConflict,
    InstanceCatalog,
    InstanceKey,
    InstanceRecord,
    InstanceStore,
    InstanceTooLarge,
    InsufficientSpace,
    InvalidUID,
    RecordOutcome,
    StagedInstance,
    files,
    is_storable_uid,
    sha256_of,
)
from node.storage.root import STORE_MARKER, WrongStorageRoot, open_store
from tests.helpers.node import stored_files

PATH_SAFE = re.compile(r"[0-9]+(\.[0-9]+)*")
VALID_UIDS = st.from_regex(r"\A(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,6}\Z").filter(
    lambda uid: len(uid) <= 64)


@given(VALID_UIDS)
def test_every_uid_pydicom_calls_valid_is_storable(uid: str) -> None:
    assert UID(uid).is_valid
    assert is_storable_uid(uid)


@given(st.text(alphabet="0123456789./\\ \x00a-", max_size=80) | st.text(max_size=80))
def test_a_storable_uid_is_a_safe_path_component(value: str) -> None:
    if is_storable_uid(value):
        assert len(value) <= 64
        assert PATH_SAFE.fullmatch(value)
        assert value not in (".", "..") and "/" not in value


@pytest.mark.parametrize("bad", ["", ".", "..", "../1.2", "1..2", "1.2.", ".1.2", "1.2/3", "1.2 ", "1.2\n",
                                 "1.2\x00", "١.٢", "1." + "2" * 63, 1.2, None])
def test_instance_keys_refuse_unsafe_uids(bad: object) -> None:
    with pytest.raises(InvalidUID, match="study_uid"):
        InstanceKey(bad, "1.2.3", "1.2.3.4")  # type: ignore[arg-type]


def _store(root: Path, free: int = 10**12, max_bytes: int = 10**6, min_free: int = 0) -> InstanceStore:
    return InstanceStore(root, min_free_bytes=min_free, max_instance_bytes=max_bytes,
                         free_space=lambda path: free)


KEY = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5")


def test_a_committed_instance_is_in_place_with_its_hash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    content = b"DICM" * 1000
    with store.stage(io.BytesIO(content), KEY) as staged:
        assert staged.temp_path.parent == staged.final_path.parent  # same folder: rename is atomic
        assert not staged.final_path.exists()
        staged.commit()
    final = tmp_path / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    assert final.read_bytes() == content
    assert staged.sha256 == hashlib.sha256(content).hexdigest() == sha256_of(final)
    assert staged.size == len(content)
    assert str(staged.relative_path) == "1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    assert stored_files(tmp_path) == [final]


def test_a_received_file_is_adopted_by_a_move(tmp_path: Path) -> None:
    store = _store(tmp_path / "storage")
    received = tmp_path / "received.dcm"
    content = b"DICM" * 1000
    received.write_bytes(content)
    with store.adopt(received, KEY) as staged:
        assert not received.exists()
        assert staged.temp_path.parent == staged.final_path.parent
        staged.commit()
    assert staged.final_path.read_bytes() == content
    assert staged.sha256 == hashlib.sha256(content).hexdigest()
    assert staged.size == len(content)
    assert stored_files(tmp_path / "storage") == [staged.final_path]


def test_a_commit_makes_every_folder_on_its_path_durable(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when another writer made the folders: its fsync of their parents may not have run yet."""
    store = _store(tmp_path / "storage")
    (store.root / KEY.study_uid / KEY.series_uid).mkdir(parents=True)  # made by another association
    synced: list[Path] = []
    real = files.fsync_dir

    def recorded(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(files, "fsync_dir", recorded)
    with store.stage(io.BytesIO(b"DICM"), KEY) as staged:
        staged.commit()
    assert synced == [store.root / KEY.study_uid / KEY.series_uid, store.root / KEY.study_uid, store.root]


@pytest.mark.parametrize("adopt", [True, False])
def test_a_folder_removed_by_retention_while_storing_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adopt: bool) -> None:
    store = _store(tmp_path / "storage")
    received = tmp_path / "received.dcm"
    received.write_bytes(b"DICM")
    ensure = store._ensure_folder

    def made_then_removed(key: InstanceKey) -> Path:
        folder = ensure(key)
        monkeypatch.setattr(store, "_ensure_folder", ensure)
        folder.rmdir()  # retention removing the study's now-empty folders
        folder.parent.rmdir()
        return folder

    monkeypatch.setattr(store, "_ensure_folder", made_then_removed)
    with (store.adopt(received, KEY) if adopt else store.stage(received.open("rb"), KEY)) as staged:
        staged.commit()
    assert staged.final_path.read_bytes() == b"DICM"


def test_an_adopted_file_left_uncommitted_is_gone(tmp_path: Path) -> None:
    store = _store(tmp_path / "storage")
    received = tmp_path / "received.dcm"
    received.write_bytes(b"DICM")
    with store.adopt(received, KEY):
        pass
    assert stored_files(tmp_path) == []


def test_a_received_file_on_another_file_system_is_copied(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    store = _store(tmp_path)
    content = b"DICM" * 100
    with tempfile_in(other) as received:
        received.write_bytes(content)
        with store.adopt(received, KEY) as staged:
            staged.commit()
        assert received.read_bytes() == content  # the copy leaves the original to its owner
    assert staged.final_path.read_bytes() == content
    assert staged.sha256 == hashlib.sha256(content).hexdigest()


@contextmanager
def tempfile_in(folder: Path) -> Iterator[Path]:
    path = folder / f"lsent-test-{uuid.uuid4().hex}.dcm"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def test_an_uncommitted_instance_leaves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.stage(io.BytesIO(b"x" * 10), KEY):
        pass
    assert stored_files(tmp_path) == []


def test_an_instance_growing_over_the_maximum_leaves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, max_bytes=100)
    with pytest.raises(InstanceTooLarge):
        store.stage(io.BytesIO(b"x" * 101), KEY)
    assert stored_files(tmp_path) == []


def test_a_sweep_removes_only_stale_staged_files(tmp_path: Path) -> None:
    import os
    import time
    from datetime import timedelta

    store = _store(tmp_path)
    with store.stage(io.BytesIO(b"DICM"), KEY) as staged:
        staged.commit()
    folder = staged.final_path.parent
    stale, fresh = folder / ".1.2.3.4.6.abc.part", folder / ".1.2.3.4.7.def.part"
    stale.write_bytes(b"half an instance")
    fresh.write_bytes(b"being received")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert store.sweep_partial(timedelta(hours=1)) == 1
    assert stored_files(tmp_path) == sorted([staged.final_path, fresh])
    with pytest.raises(ValueError, match="older_than"):
        store.sweep_partial(timedelta(seconds=-1))


def test_a_sweep_removes_stale_incoming_files_of_the_store_only(tmp_path: Path) -> None:
    import os
    import time
    from datetime import timedelta

    store = _store(tmp_path / "storage")
    two_hours_ago = time.time() - 7200
    placed: dict[str, Path] = {}
    for where, folder in (("inside", store.incoming), ("shared", tmp_path / "tmp")):
        folder.mkdir(parents=True)
        for name in ("tmpab12cd.dcm", "tmpfresh1.dcm", "notes.txt"):
            path = placed[f"{where}/{name}"] = folder / name
            path.write_bytes(b"DICM")
        for name in ("tmpab12cd.dcm", "notes.txt"):
            os.utime(folder / name, (two_hours_ago, two_hours_ago))

    assert store.incoming == store.root / ".incoming"
    assert store.sweep_partial(timedelta(hours=1)) == 1
    assert [name for name, path in placed.items() if not path.exists()] == ["inside/tmpab12cd.dcm"]


def test_capacity_checks_size_and_the_watermark(tmp_path: Path) -> None:
    _store(tmp_path, free=1000, max_bytes=500, min_free=400).check_capacity(500)
    with pytest.raises(InstanceTooLarge):
        _store(tmp_path, max_bytes=500).check_capacity(501)
    with pytest.raises(InsufficientSpace, match="watermark"):
        _store(tmp_path, free=1000, min_free=400).check_capacity(601)


def _staged(store: InstanceStore, key: InstanceKey = KEY, content: bytes = b"content") -> StagedInstance:
    return store.stage(io.BytesIO(content), key)


def _record(key: InstanceKey = KEY) -> InstanceRecord:
    return InstanceRecord(key=key, sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                          transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MR", series_number=3,
                          series_description="T1 SAG")


def _current(sessions: sessionmaker[Session], sop_uid: str) -> Row[str, str, int] | None:
    """The current version's path, SHA-256 and version number, as the catalog left them."""
    with sessions() as session:
        return session.execute(
            select(Instance.path, Instance.sha256, Instance.version)
            .where(Instance.sop_instance_uid == sop_uid, Instance.is_current.is_(True))
        ).one_or_none()


def _file(meta_version: bytes, data_set: bytes) -> bytes:
    """A Part 10 file: preamble, a File Meta group whose only element besides its length is a version name."""
    version = meta_version + b"\0" * (len(meta_version) % 2)
    element = struct.pack("<HH2sH", 0x0002, 0x0013, b"SH", len(version)) + version
    return (b"\0" * 128 + b"DICM" + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(element))
            + element + data_set)


def test_a_resend_differing_only_in_our_own_file_meta_is_a_duplicate(engine: Engine, tmp_path: Path) -> None:
    """The receiving library writes the File Meta (its version name): an upgrade must not make versions."""
    root = tmp_path / "storage"
    store, catalog = _store(root), InstanceCatalog(engine)
    with _staged(store, content=_file(b"PYNETDICOM_304", b"the data set")) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.STORED
    with _staged(store, content=_file(b"PYNETDICOM_305", b"the data set")) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.DUPLICATE
    with _staged(store, content=_file(b"PYNETDICOM_305", b"another data set")) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.NEW_VERSION
    found = _current(session_factory(engine), KEY.sop_uid)
    assert found is not None and found.version == 2


def _stored_once(engine: Engine, root: Path) -> tuple[sessionmaker[Session], InstanceStore, InstanceCatalog]:
    """Sessions, store and catalog under ``root``, with the instance ``KEY`` stored."""
    store, catalog = _store(root), InstanceCatalog(engine)
    with _staged(store) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.STORED
    return session_factory(engine), store, catalog


def test_recording_again_keeps_same_content_once_and_other_content_as_a_new_version(
        engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    sessions, store, catalog = _stored_once(engine, root)
    with _staged(store) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.DUPLICATE
    with sessions.begin() as session:
        session.execute(update(Study).values(status=StudyStatus.ANALYSED))
    with _staged(store, content=b"other") as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.NEW_VERSION
    first, second = root / KEY.relative_path, root / KEY.relative_path.with_name(f"{KEY.sop_uid}.v2.dcm")
    assert (first.read_bytes(), second.read_bytes()) == (b"content", b"other")
    assert stored_files(root) == sorted([first, second])
    found = _current(sessions, KEY.sop_uid)
    assert found is not None and (found.version, found.sha256) == (2, hashlib.sha256(b"other").hexdigest())
    with sessions() as session:
        series = session.scalars(select(Series)).one()
        assert (series.modality, series.series_number, series.description) == ("MR", 3, "T1 SAG")
        rows = session.execute(select(Instance.version, Instance.is_current).order_by(Instance.version)).all()
        assert rows == [(1, False), (2, True)]
        study = session.scalars(select(Study)).one()
        assert (study.status, study.content_version) == (StudyStatus.RECEIVING, 2)


def test_an_instance_whose_stored_file_was_lost_is_stored_again_when_sent_again(
        engine: Engine, tmp_path: Path) -> None:
    """A file gone out of band (not by retention): the resend is its last copy, not a duplicate."""
    root = tmp_path / "storage"
    sessions = session_factory(engine)
    store, catalog = _store(root), InstanceCatalog(engine)
    neighbour = InstanceKey(KEY.study_uid, KEY.series_uid, f"{KEY.sop_uid}.2")
    for key in (KEY, neighbour):
        with _staged(store, key) as staged:
            assert catalog.record(_record(key), staged) is RecordOutcome.STORED
    with sessions.begin() as session:
        session.execute(update(Study).values(status=StudyStatus.FAILED, skip_reason="FileNotFoundError"))
    (root / KEY.relative_path).unlink()
    with _staged(store) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.RESTORED
    restored = root / KEY.relative_path.with_name(f"{KEY.sop_uid}.v2.dcm")
    assert restored.read_bytes() == b"content"
    found = _current(sessions, KEY.sop_uid)
    assert found is not None and (found.path, found.version) == (str(restored.relative_to(root)), 2)
    with sessions() as session:
        study = session.scalars(select(Study)).one()
        assert (study.status, study.skip_reason, study.content_version) == (StudyStatus.RECEIVING, None, 3)
    with _staged(store) as staged:  # the file is back: a further resend is a duplicate again
        assert catalog.record(_record(), staged) is RecordOutcome.DUPLICATE


def test_a_receiver_on_the_wrong_storage_root_takes_no_instance_for_lost(
        engine: Engine, tmp_path: Path) -> None:
    # An unmounted volume's empty mount point: every stored file is missing there, and a new
    # version written there would retire the good one on the right disk.
    right, wrong = tmp_path / "shared", tmp_path / "empty-mount-point"
    sessions = session_factory(engine)
    catalog = InstanceCatalog(engine)
    neighbour = InstanceKey(KEY.study_uid, KEY.series_uid, f"{KEY.sop_uid}.2")
    for key in (KEY, neighbour):
        with _staged(_store(right), key) as staged:
            assert catalog.record(_record(key), staged) is RecordOutcome.STORED
    with _staged(_store(wrong)) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.DUPLICATE
    found = _current(sessions, KEY.sop_uid)
    assert found is not None and found.version == 1 and (right / found.path).is_file()
    assert stored_files(wrong) == []
    with sessions() as session:
        assert session.scalars(select(Study.content_version)).one() == 2


def test_a_study_whose_every_file_was_lost_is_stored_again_on_the_marked_store(
        engine: Engine, tmp_path: Path) -> None:
    # Without the store's marker a study with no file in place looked like a receiver on
    # the wrong root: its resend stayed "duplicates", and the study failed for good.
    root = tmp_path / "storage"
    sessions, store, catalog = _stored_once(engine, root)
    open_store(root, sessions)
    (root / KEY.relative_path).unlink()
    with _staged(store) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.RESTORED
    found = _current(sessions, KEY.sop_uid)
    assert found is not None and found.version == 2 and (root / found.path).read_bytes() == b"content"


def test_the_store_is_marked_when_new_or_when_a_recorded_file_is_in_place(
        engine: Engine, tmp_path: Path) -> None:
    sessions = session_factory(engine)
    new = tmp_path / "new"
    open_store(new, sessions)  # nothing recorded yet: a new node's folder
    assert (new / STORE_MARKER).is_file()

    root = tmp_path / "storage"
    _stored_once(engine, root)
    open_store(root, sessions)  # a store from before the marker
    assert sorted(p.name for p in root.iterdir()) == [STORE_MARKER, KEY.study_uid]

    empty = tmp_path / "empty-mount-point"
    with pytest.raises(WrongStorageRoot, match=r"empty-mount-point is not this database's store"):
        open_store(empty, sessions)
    assert list(empty.iterdir()) == []
    # A folder marked before a volume was mounted over it is not the store once the volume is
    # missing: every recorded file would count as lost, and resends would retire the good ones.
    with pytest.raises(WrongStorageRoot,
                       match=rf"new is not this database's store: .*holds a {STORE_MARKER}"):
        open_store(new, sessions)
    open_store(new, sessions, verify=False)  # the operator says the files are lost for good


@pytest.mark.parametrize("same_content", [True, False], ids=["same content", "other content"])
def test_racing_records_of_one_sop_instance(engine: Engine, tmp_path: Path, same_content: bool) -> None:
    root = tmp_path / "storage"
    store, catalog = _store(root), InstanceCatalog(engine)
    barrier = threading.Barrier(6)
    outcomes: list[RecordOutcome] = []

    def record(index: int) -> None:
        content = b"copy" if same_content else f"copy {index}".encode()
        with _staged(store, content=content) as staged:
            barrier.wait()
            outcomes.append(catalog.record(_record(), staged))

    threads = [threading.Thread(target=record, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = RecordOutcome.DUPLICATE if same_content else RecordOutcome.NEW_VERSION
    assert sorted(outcomes) == sorted([RecordOutcome.STORED] + [again] * 5)
    found = _current(session_factory(engine), KEY.sop_uid)
    assert found is not None
    assert sha256_of(root / found.path) == found.sha256
    with session_factory(engine)() as session:
        rows = session.execute(select(Instance.version, Instance.is_current, Instance.path, Instance.sha256)
                               .order_by(Instance.version)).all()
        study = session.scalars(select(Study)).one()
    expected_versions = [1] if same_content else [1, 2, 3, 4, 5, 6]
    assert [r.version for r in rows] == expected_versions
    assert [r.is_current for r in rows] == [r.version == expected_versions[-1] for r in rows]
    assert all(sha256_of(root / r.path) == r.sha256 for r in rows)
    assert len(stored_files(root)) == len(expected_versions)
    assert study.content_version == len(expected_versions)


def test_a_new_instance_reopens_a_finished_study(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    store, sessions = _store(root), session_factory(engine)
    catalog = InstanceCatalog(engine)
    with _staged(store) as staged:
        catalog.record(_record(), staged)
    for index, status in enumerate((StudyStatus.COMPLETE, StudyStatus.ANALYSED, StudyStatus.SKIPPED)):
        with sessions.begin() as session:
            session.execute(update(Study).values(status=status, skip_reason="no sagittal MR series"))
        key = InstanceKey(KEY.study_uid, KEY.series_uid, f"{KEY.sop_uid}.{index}")
        with _staged(store, key) as staged:
            assert catalog.record(_record(key), staged) is RecordOutcome.STORED
        with sessions() as session:
            study = session.scalars(select(Study)).one()
            assert study.status == StudyStatus.RECEIVING
            assert (study.completed_at, study.skip_reason) == (None, None)


def test_a_series_under_another_study_is_a_conflict(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    store, sessions = _store(root), session_factory(engine)
    catalog = InstanceCatalog(engine)
    with _staged(store) as staged:
        catalog.record(_record(), staged)
    other = InstanceKey("1.2.9", KEY.series_uid, "1.2.9.9")
    with _staged(store, other) as staged, pytest.raises(CatalogConflict):
        catalog.record(_record(other), staged)
    with sessions() as session:
        assert session.scalars(select(Study.study_instance_uid)).all() == [KEY.study_uid]
        assert len(session.scalars(select(Instance)).all()) == 1
    assert len(stored_files(root)) == 1


def test_racing_instances_of_a_new_study_share_its_rows(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    store, sessions = _store(root), session_factory(engine)
    catalog = InstanceCatalog(engine)
    barrier = threading.Barrier(6)
    outcomes: list[RecordOutcome] = []

    def record(index: int) -> None:
        key = InstanceKey(KEY.study_uid, KEY.series_uid, f"{KEY.sop_uid}.{index}")
        with _staged(store, key) as staged:
            barrier.wait()
            outcomes.append(catalog.record(_record(key), staged))

    threads = [threading.Thread(target=record, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [RecordOutcome.STORED] * 6
    with sessions() as session:
        assert len(session.scalars(select(Study)).all()) == 1
        assert len(session.scalars(select(Series)).all()) == 1
        assert len(session.scalars(select(Instance)).all()) == 6
    assert len(stored_files(root)) == 6


def test_a_commit_that_fails_leaves_no_file_behind(engine: Engine, tmp_path: Path) -> None:
    """The file is put in place before the transaction commits; the peer is told to retry, and may not."""
    root = tmp_path / "storage"
    store, catalog = _store(root), InstanceCatalog(engine)
    refusals = [True]  # the first commit of an instance row

    def refuse_once(conn: Connection) -> None:
        if conn.info.pop("inserted", False) and refusals:
            refusals.pop()
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    def note_insert(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO INSTANCES"):
            conn.info["inserted"] = True

    event.listen(engine, "before_cursor_execute", note_insert)
    event.listen(engine, "commit", refuse_once)
    try:
        with _staged(store) as staged, pytest.raises(OperationalError):
            catalog.record(_record(), staged)
    finally:
        event.remove(engine, "commit", refuse_once)
        event.remove(engine, "before_cursor_execute", note_insert)
    assert stored_files(root) == []
    with _staged(store) as staged:
        assert catalog.record(_record(), staged) is RecordOutcome.STORED
    assert stored_files(root) == [root / KEY.relative_path]
