"""The database side of storing an instance: study, series and instance rows.

``record`` upserts the study and series, inserts the instance row, and
commits the staged file *inside* the transaction, before the commit: once the
row is visible the file is durably in place. A SOP Instance UID is stored
once; the unique constraint decides races between associations, and the
loser reports a duplicate instead of an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Association, Instance, Series, Study, StudyStatus, utcnow
from node.storage.files import StagedInstance
from node.storage.keys import CatalogConflict, InstanceKey

log = logging.getLogger(__name__)

_DESCRIPTION_LENGTH = 64


@dataclass(frozen=True)
class InstanceRecord:
    """What the catalog keeps about one received instance (no patient data)."""

    key: InstanceKey
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    association_id: int | None = None


class RecordOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoredInstance:
    path: str
    sha256: str
    size_bytes: int


class InstanceCatalog:
    """Records received instances; the only writer of study, series and instance rows on receipt."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def find(self, sop_uid: str) -> StoredInstance | None:
        with self._sessions() as session:
            row = session.execute(
                select(Instance.path, Instance.sha256, Instance.size_bytes)
                .where(Instance.sop_instance_uid == sop_uid)
            ).one_or_none()
        return None if row is None else StoredInstance(row.path, row.sha256, row.size_bytes)

    def record(self, record: InstanceRecord, staged: StagedInstance) -> RecordOutcome:
        """Insert the instance and commit ``staged`` before the transaction commits.

        Returns ``DUPLICATE`` (and leaves ``staged`` uncommitted) if the SOP
        Instance UID is already stored, also when another association stored
        it a moment earlier. Raises :class:`CatalogConflict` if the series is
        known under another study.
        """
        now = self._clock()
        try:
            with self._sessions.begin() as session:
                study_id = self._upsert_study(session, record.key.study_uid, now)
                self._upsert_series(session, study_id, record)
                session.add(Instance(
                    series_id=self._series_id(session, study_id, record.key),
                    association_id=record.association_id,
                    sop_instance_uid=record.key.sop_uid,
                    sop_class_uid=record.sop_class_uid,
                    transfer_syntax_uid=record.transfer_syntax_uid,
                    path=str(staged.relative_path),
                    size_bytes=staged.size,
                    sha256=staged.sha256,
                    received_at=now,
                ))
                session.flush()
                if record.association_id is not None:
                    session.execute(
                        update(Association)
                        .where(Association.id == record.association_id)
                        .values(instances_received=Association.instances_received + 1)
                    )
                staged.commit()
        except IntegrityError:
            if self.find(record.key.sop_uid) is None:
                raise
            return RecordOutcome.DUPLICATE
        return RecordOutcome.STORED

    @staticmethod
    def _upsert(session: Session, model: type[Study] | type[Series]) -> Any:
        # ON CONFLICT exists on both backends, under dialect-specific constructs.
        if session.get_bind().dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def _upsert_study(self, session: Session, study_uid: str, now: datetime) -> int:
        # A new instance reopens a study that was complete, analysed or skipped:
        # the completion monitor then queues a fresh analysis after the quiet period.
        statement = (
            self._upsert(session, Study)
            .values(study_instance_uid=study_uid, first_received_at=now, last_received_at=now,
                    status=StudyStatus.RECEIVING)
            .on_conflict_do_update(
                index_elements=[Study.study_instance_uid],
                set_={"last_received_at": now, "status": StudyStatus.RECEIVING.value,
                      "completed_at": None, "skip_reason": None},
            )
            .returning(Study.id)
        )
        study_id: int = session.execute(statement).scalar_one()
        return study_id

    def _upsert_series(self, session: Session, study_id: int, record: InstanceRecord) -> None:
        description = record.series_description
        if description is not None:
            description = description[:_DESCRIPTION_LENGTH]
        session.execute(
            self._upsert(session, Series)
            .values(study_id=study_id, series_instance_uid=record.key.series_uid,
                    modality=record.modality, series_number=record.series_number,
                    description=description)
            .on_conflict_do_nothing(index_elements=[Series.series_instance_uid])
        )

    @staticmethod
    def _series_id(session: Session, study_id: int, key: InstanceKey) -> int:
        series_id, owner = session.execute(
            select(Series.id, Series.study_id).where(Series.series_instance_uid == key.series_uid)
        ).one()
        if owner != study_id:
            raise CatalogConflict(
                f"series {key.series_uid} is already stored under another study than {key.study_uid}")
        result: int = series_id
        return result
