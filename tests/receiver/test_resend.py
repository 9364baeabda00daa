"""Issue 17 item 2: a SOP Instance re-sent with other content is kept as a new, current version.

DCMTK's storescu sends an instance, the same file again (a no-op), then a
file with the same SOP Instance UID and other pixel data. Both versions stay
on disk and in ``instances``, the second is current, and the study, which
had been analysed, is receiving again so that it is analysed again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from node.db.models import Instance, Study, StudyStatus
from node.storage import sha256_of
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import running_node, stored_files
from tests.helpers.senders import storescu


def _study(session: Session, uid: str) -> Study:
    return session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()


def test_a_resent_instance_with_other_content_becomes_the_current_version(
        database_url: str, tmp_path: Path) -> None:
    uids = StudyUIDs.new()
    original = mr_instance(uids.study, uids.series[0], 1)
    changed = mr_instance(uids.study, uids.series[0], 1, sop_uid=original.SOPInstanceUID)
    changed.PixelData = (np.frombuffer(original.PixelData, dtype="<u2") ^ 0x0F0F).astype("<u2").tobytes()
    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    original.save_as(first, enforce_file_format=True)
    changed.save_as(second, enforce_file_format=True)

    with running_node(tmp_path / "node", database_url) as node:
        sent = storescu(node, [first])
        assert sent.returncode == 0, sent.stderr
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        with node.engine() as engine, Session(engine) as session, session.begin():
            session.execute(update(Study).values(status=StudyStatus.ANALYSED, last_received_at=long_ago))
        again = storescu(node, [first])  # identical: nothing changes
        assert again.returncode == 0, again.stderr
        with node.engine() as engine, Session(engine) as session:
            assert _study(session, uids.study).status == StudyStatus.ANALYSED
            assert len(session.scalars(select(Instance)).all()) == 1
        resent = storescu(node, [second])
        assert resent.returncode == 0, resent.stderr
        log = node.log_text()

    assert "kept the first copy" not in log
    assert len(stored_files(node.storage_root)) == 2
    with node.engine() as engine, Session(engine) as session:
        rows = session.scalars(select(Instance).order_by(Instance.id)).all()
        study = _study(session, uids.study)
    assert [(r.sop_instance_uid, r.version, r.is_current) for r in rows] == [
        (original.SOPInstanceUID, 1, False), (original.SOPInstanceUID, 2, True)]
    assert [sha256_of(node.storage_root / r.path) for r in rows] == [r.sha256 for r in rows]
    assert rows[0].sha256 != rows[1].sha256
    assert study.status == StudyStatus.RECEIVING
    assert study.completed_at is None and study.last_received_at > long_ago
    assert f"SOP Instance {original.SOPInstanceUID} re-sent with different content" in log
