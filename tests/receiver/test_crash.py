"""A success answered is a promise: the instance survives `kill -9` of the node right after it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from node.db.models import AssociationResult
from node.storage import sha256_of
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import make_node, stored_files
from tests.helpers.rows import read_rows
from tests.helpers.senders import association


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
