"""DCMTK's storescu against several receiver processes, one of them killed mid-transfer.

The promise under test is the C-STORE handler's: an instance acknowledged with
success is stored and indexed, whatever happens to the process after the
acknowledgement. A sender whose association died retries, as a PACS does, and
the node then holds every instance once.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pydicom

from node.db.models import AssociationResult
from node.receiver.associations import NODE_RESTARTED
from tests.helpers.dicom import write_study
from tests.helpers.node import NodeProcess, make_node, receiver_process_pids
from tests.helpers.rows import read_rows
from tests.helpers.senders import storescu
from tests.queue.helpers import wait_until

SENDERS = 4
INSTANCES = 60
# storescu -v: each file is announced, then its response is reported
_SENDING = re.compile(r"^I: Sending file: (.+)$")
_SUCCESS = "I: Received Store Response (Success)"


def _acknowledged(output: str) -> set[Path]:
    """The files storescu reports as stored with success."""
    acknowledged: set[Path] = set()
    current: Path | None = None
    for line in output.splitlines():
        if match := _SENDING.match(line):
            current = Path(match.group(1))
        elif line.startswith(_SUCCESS) and current is not None:
            acknowledged.add(current)
            current = None
    return acknowledged


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _stored_instances(node: NodeProcess) -> dict[str, tuple[str, str]]:
    """Current instances: SOP Instance UID -> (path under the storage root, sha256)."""
    with node.engine() as engine:
        return {i.sop_instance_uid: (i.path, i.sha256) for i in read_rows(engine).instances if i.is_current}


def test_a_killed_receiver_process_loses_no_acknowledged_instance(database_url: str, tmp_path: Path) -> None:
    node = make_node(tmp_path, database_url, {"dicom": {"receiver_processes": 2}})
    folders = [tmp_path / f"sender{n}" for n in range(SENDERS)]
    files = {folder: write_study(folder, INSTANCES, size=256)[1] for folder in folders}
    node.start()
    try:
        [child] = receiver_process_pids(node)
        senders = [
            subprocess.Popen(["storescu", "-v", "-aet", f"PACS{n}", "-aec", node.ae_title, "127.0.0.1",
                              str(node.port), *map(str, files[folder])],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n, folder in enumerate(folders)
        ]
        wait_until(lambda: len(_stored_instances(node)) >= SENDERS * INSTANCES // 4,
                   "a quarter of the instances stored", timeout=60.0)
        os.kill(child, signal.SIGKILL)
        outputs = [sender.communicate(timeout=120)[0] for sender in senders]

        acknowledged = {_sop_uid(path) for output in outputs for path in _acknowledged(output)}
        stored = _stored_instances(node)
        assert 0 < len(acknowledged) < SENDERS * INSTANCES, "the kill must land mid-transfer"
        assert acknowledged <= set(stored), "an acknowledged instance is missing"
        for relative, sha256 in stored.values():
            assert hashlib.sha256((node.storage_root / relative).read_bytes()).hexdigest() == sha256

        wait_until(lambda: "starting it again" in node.log_text(), "the killed process restarted",
                   timeout=30.0)
        # the PACS sends the whole study again; what is already stored adds no row
        for folder in folders:
            again = storescu(node, files[folder])
            assert again.returncode == 0, again.stdout + again.stderr
    finally:
        assert node.terminate() == 0

    stored = _stored_instances(node)
    assert set(stored) == {_sop_uid(path) for paths in files.values() for path in paths}
    with node.engine() as engine:
        rows = read_rows(engine)
    assert len(rows.instances) == SENDERS * INSTANCES  # byte-identical re-sends add no version
    killed = [a for a in rows.associations if a.reason == NODE_RESTARTED]
    assert killed and all(a.result == AssociationResult.ABORTED for a in killed)
    assert len({a.node_id for a in killed}) == 1  # only the killed process's associations
