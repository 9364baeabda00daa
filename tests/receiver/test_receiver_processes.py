"""dicom.receiver_processes: more receiver processes on the node's port (SO_REUSEPORT)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select

from node.db.models import Instance
from tests.helpers.dicom import write_study
from tests.helpers.node import running_node
from tests.helpers.senders import storescu


def test_extra_receiver_processes_share_the_port_and_every_instance_is_stored(
    tmp_path: Path, database_url: str
) -> None:
    _, paths = write_study(tmp_path / "study", 24)
    with running_node(tmp_path / "node", database_url, {"dicom": {"receiver_processes": 2}}) as node:
        deadline = time.monotonic() + 60
        while "receiver process" not in node.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "receiver process" in node.log_text(), node.log_text()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda part: storescu(node, part), [paths[i::4] for i in range(4)]))
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr[-500:] for r in results]
        with node.engine() as engine, engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Instance)).scalar_one() == len(paths)
    assert node.process is not None and node.process.returncode == 0
    assert "Traceback" not in node.log_text(), node.log_text()
