"""Issue 17 item 7: a study is not complete while an association that stored into it is open.

A real node with a 2 s quiet period. Association 1 stores an instance and
stays open; association 2, also left open, re-sends the same instance (a
duplicate). Another study sent and released afterwards completes, which
proves the monitor has scanned past the first study's quiet period: the
first study is still receiving while either association is open, and
completes once both are released.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select

from node.db.models import Study, StudyStatus
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import NodeProcess, running_node
from tests.helpers.senders import associate, store
from tests.queue.helpers import wait_until

SECTIONS = {"study": {"quiet_period": 2, "completion_poll_interval": 0.1}}


def _status(node: NodeProcess, study_uid: str) -> str:
    with node.engine() as engine, engine.connect() as conn:
        return str(conn.scalar(select(Study.status).where(Study.study_instance_uid == study_uid)))


def _quiet_period_passed(node: NodeProcess) -> None:
    """Send a study of its own, release, and wait for it to complete: later than anything sent before."""
    uids = StudyUIDs.new()
    assert [s.Status for s in store(node, [mr_instance(uids.study, uids.series[0], 1)])] == [0]
    wait_until(lambda: _status(node, uids.study) == StudyStatus.COMPLETE, "the sentinel study to complete")


def _send(assoc: object, dataset: Dataset) -> None:
    assert assoc.send_c_store(dataset).Status == 0x0000  # type: ignore[attr-defined]


def test_an_open_association_holds_the_study_it_stored_into(database_url: str, tmp_path: Path) -> None:
    uids = StudyUIDs.new()
    instance = mr_instance(uids.study, uids.series[0], 1)
    with running_node(tmp_path / "node", database_url, SECTIONS) as node:
        first = associate(node)
        second = associate(node)
        assert first.is_established and second.is_established
        try:
            _send(first, instance)
            _send(second, instance)  # a resend made only of a duplicate
            _quiet_period_passed(node)
            assert _status(node, uids.study) == StudyStatus.RECEIVING
            first.release()
            _quiet_period_passed(node)
            assert _status(node, uids.study) == StudyStatus.RECEIVING  # the duplicate's sender is still open
            second.release()
            wait_until(lambda: _status(node, uids.study) == StudyStatus.COMPLETE,
                       "the study to complete once released")
        finally:
            for assoc in (first, second):
                if assoc.is_established:
                    assoc.release()
