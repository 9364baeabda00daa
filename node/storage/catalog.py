"""The database side of storing an instance: study, series and instance rows.

``record`` upserts the study and series, inserts the instance row, and
commits the staged file *inside* the transaction, before the commit: once the
row is visible the file is durably in place.

A SOP Instance UID sent again is handled by this policy:

- byte for byte the same as its current version: a duplicate. Nothing is
  written, but the study's quiet period restarts while it is receiving, and
  the association is noted as sending the study (a study does not complete
  while such an association is open);
- other content: kept as a new version beside the earlier ones
  (``<sop>.v2.dcm``, ...), which stay on disk and in ``instances``. The new
  version becomes the current one, the only one an analysis reads, and the
  study goes back to ``receiving`` so that it is analysed again.

Every stored instance or version adds one to the study's ``content_version``
in the same transaction; an analysis compares it with the generation it
read before its result becomes the study's answer.

Associations that store one SOP Instance UID at the same moment are
serialised before the current version is read: SQLite by its single writer
(BEGIN IMMEDIATE), PostgreSQL by a transaction-scoped advisory lock keyed on
the UID. Row locks alone do not do it under READ COMMITTED: there is no row
to lock before the first version, and a waiter on the current row re-checks
``is_current`` after the holder's commit, finds it false and sees no version
at all. The unique constraints stay the last word; a loser retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Association, AssociationStudy, Instance, Series, Study, StudyStatus, utcnow
from node.storage.files import StagedInstance
from node.storage.keys import CatalogConflict, InstanceKey

log = logging.getLogger(__name__)

_DESCRIPTION_LENGTH = 64
_RACE_ATTEMPTS = 5  # a lost race retries; each retry sees the winner's row


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
    NEW_VERSION = "new_version"  # the SOP Instance UID was stored with other content before
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoredInstance:
    path: str
    sha256: str
    size_bytes: int
    version: int = 1


class InstanceCatalog:
    """Records received instances; the only writer of study, series and instance rows on receipt."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def find(self, sop_uid: str) -> StoredInstance | None:
        """The current version of ``sop_uid``, or None if it was never stored."""
        with self._sessions() as session:
            row = session.execute(
                select(Instance.path, Instance.sha256, Instance.size_bytes, Instance.version)
                .where(Instance.sop_instance_uid == sop_uid, Instance.is_current.is_(True))
            ).one_or_none()
        return None if row is None else StoredInstance(row.path, row.sha256, row.size_bytes, row.version)

    def record(self, record: InstanceRecord, staged: StagedInstance) -> RecordOutcome:
        """Insert the instance (or its next version) and commit ``staged`` before the transaction commits.

        Returns ``DUPLICATE`` (and leaves ``staged`` uncommitted) if the SOP
        Instance UID's current version has the same content, also when another
        association stored it a moment earlier; ``NEW_VERSION`` when it had
        other content. Raises :class:`CatalogConflict` if the series is known
        under another study.
        """
        for attempt in range(1, _RACE_ATTEMPTS + 1):
            try:
                with self._sessions.begin() as session:
                    return self._record(session, record, staged, self._clock())
            except IntegrityError:
                if attempt == _RACE_ATTEMPTS:
                    raise
                log.debug("SOP Instance %s: lost a race to another association (attempt %d); retrying",
                          record.key.sop_uid, attempt)
        raise AssertionError("unreachable")

    def record_duplicate(self, record: InstanceRecord) -> None:
        """A byte-identical re-send: restart the quiet period of a receiving study, note the association."""
        with self._sessions.begin() as session:
            self._touch(session, record, self._clock())

    def _record(self, session: Session, record: InstanceRecord, staged: StagedInstance,
                now: datetime) -> RecordOutcome:
        self._serialise(session, record.key.sop_uid)
        current = session.execute(
            select(Instance.id, Instance.sha256, Instance.version, Series.study_id)
            .join(Series, Series.id == Instance.series_id)
            .where(Instance.sop_instance_uid == record.key.sop_uid, Instance.is_current.is_(True))
            .with_for_update(of=Instance)
        ).one_or_none()
        if current is not None and current.sha256 == staged.sha256:
            self._touch(session, record, now)
            return RecordOutcome.DUPLICATE
        study_id = self._upsert_study(session, record.key.study_uid, now)
        self._upsert_series(session, study_id, record)
        series_id = self._series_id(session, study_id, record.key)
        version = 1
        if current is not None:
            version = current.version + 1
            session.execute(
                update(Instance).where(Instance.id == current.id).values(is_current=False)
                .execution_options(synchronize_session=False)
            )
            if current.study_id != study_id:  # the earlier version's study lost an instance
                self._reopen(session, current.study_id, now)
        staged.use_version(version)
        session.add(Instance(
            series_id=series_id,
            association_id=record.association_id,
            sop_instance_uid=record.key.sop_uid,
            version=version,
            is_current=True,
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
            self._note_association(session, record.association_id, study_id, now)
        staged.commit()
        return RecordOutcome.STORED if version == 1 else RecordOutcome.NEW_VERSION

    @staticmethod
    def _serialise(session: Session, sop_uid: str) -> None:
        # Held until the transaction ends; a hash collision only serialises two
        # unrelated instances for a moment.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(sop_uid, 0))))

    def _touch(self, session: Session, record: InstanceRecord, now: datetime) -> None:
        # A resend made of duplicates is still a sender at work: while the study is
        # receiving its quiet period restarts. A finished study stays finished: its
        # content did not change.
        study_id = session.execute(
            update(Study)
            .where(Study.study_instance_uid == record.key.study_uid, Study.status == StudyStatus.RECEIVING)
            .values(last_received_at=now)
            .returning(Study.id)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if study_id is None:
            study_id = session.execute(
                select(Study.id).where(Study.study_instance_uid == record.key.study_uid)
            ).scalar_one_or_none()
        if study_id is not None and record.association_id is not None:
            self._note_association(session, record.association_id, study_id, now)

    def _note_association(self, session: Session, association_id: int, study_id: int, now: datetime) -> None:
        session.execute(
            self._upsert(session, AssociationStudy)
            .values(association_id=association_id, study_id=study_id, first_stored_at=now,
                    last_stored_at=now)
            .on_conflict_do_update(
                index_elements=[AssociationStudy.association_id, AssociationStudy.study_id],
                set_={"last_stored_at": now},
            )
        )

    @staticmethod
    def _reopen(session: Session, study_id: int, now: datetime) -> None:
        session.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(last_received_at=now, status=StudyStatus.RECEIVING, completed_at=None, skip_reason=None,
                    content_version=Study.content_version + 1)
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    def _upsert(session: Session, model: type[Study] | type[Series] | type[AssociationStudy]) -> Any:
        # ON CONFLICT exists on both backends, under dialect-specific constructs.
        if session.get_bind().dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def _upsert_study(self, session: Session, study_uid: str, now: datetime) -> int:
        # A new instance reopens a study that was complete, analysed or skipped:
        # the completion monitor then queues a fresh analysis after the quiet period.
        # The row lock this takes orders the content generations as the commits.
        statement = (
            self._upsert(session, Study)
            .values(study_instance_uid=study_uid, first_received_at=now, last_received_at=now,
                    status=StudyStatus.RECEIVING, content_version=1)
            .on_conflict_do_update(
                index_elements=[Study.study_instance_uid],
                set_={"last_received_at": now, "status": StudyStatus.RECEIVING.value,
                      "completed_at": None, "skip_reason": None,
                      "content_version": Study.content_version + 1},
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
