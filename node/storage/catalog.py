"""The database side of storing an instance: study, series and instance rows.

``record`` upserts the study and series, inserts the instance row, and
commits the staged file *inside* the transaction, before the commit: once the
row is visible the file is durably in place.

A SOP Instance UID sent again is handled by this policy:

- byte for byte the same as its current version (its data set: the File
  Meta Information is written by the receiving library), or the same image in
  another transfer syntax (a lossless re-encoding, :mod:`node.storage.content`):
  a duplicate. Nothing is
  written, but the study's quiet period restarts while it is receiving, and
  the association is noted as sending the study (a study does not complete
  while such an association is open);
- the same content, but retention deleted the current version's file (its
  study's results were delivered long ago), or the file is missing for
  another reason (lost out of band): stored again as the next version, and
  the study is analysed again as after other content. A file counts as lost
  when the root carries the store's marker (:mod:`node.storage.root`) or
  another file of its study is in place; with neither, the root is more
  likely the wrong one (an unmounted volume) than every file lost: the resend
  stays a duplicate and an error says so;
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

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from node.db.models import utcnow
from node.storage.files import StagedInstance, holds_store
from node.storage.keys import CatalogConflict, InstanceKey
from node.storage.statements import CatalogStatements

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
    RESTORED = "restored"  # the same content, whose earlier file retention deleted or was lost
    DUPLICATE = "duplicate"


class InstanceCatalog:
    """Records received instances; the only writer of study, series and instance rows on receipt."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        # Core on the engine, no ORM session: this runs once per instance received.
        self._engine = engine
        self._clock = clock
        self._statements: dict[str, CatalogStatements] = {}

    def _record_racing(self, record: InstanceRecord, staged: StagedInstance) -> RecordOutcome:
        """Insert the instance (or its next version) and commit ``staged`` before the transaction commits.

        Returns ``DUPLICATE`` (and leaves ``staged`` uncommitted) if the SOP
        Instance UID's current version has the same content, also when another
        association stored it a moment earlier; ``NEW_VERSION`` when it had
        other content; ``RESTORED`` when its file was deleted by retention or lost.
        Raises :class:`CatalogConflict` if the series is known under another
        study.
        """
        for attempt in range(1, _RACE_ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    return self._record(conn, record, staged, self._clock())
            except IntegrityError:
                if attempt == _RACE_ATTEMPTS:
                    raise
                log.debug("SOP Instance %s: lost a race to another association (attempt %d); retrying",
                          record.key.sop_uid, attempt)
        raise AssertionError("unreachable")

    def record(self, record: InstanceRecord, staged: StagedInstance) -> RecordOutcome:
        """:meth:`_record_racing`; when the database fails, the file put in place is removed again.

        The file is renamed before the transaction commits, so a commit that fails
        would leave it under its final name with no row (the peer is told to
        retry; a resend would replace it, but a peer may never resend).
        """
        try:
            return self._record_racing(record, staged)
        except SQLAlchemyError:
            try:
                self._unless_recorded(record.key, staged)
            except SQLAlchemyError:
                log.warning("could not check the file of SOP Instance %s after a database error; it "
                            "stays at %s until the instance is sent again", record.key.sop_uid,
                            staged.relative_path)
            raise

    def _unless_recorded(self, key: InstanceKey, staged: StagedInstance) -> None:
        """Delete the file ``staged`` committed unless a row names it (the commit may have succeeded)."""
        if not staged.committed:
            return
        with self._engine.begin() as conn:
            sql = self._sql(conn)
            # Under the SOP's lock no other recorder is between its rename and its commit,
            # so a path no row names is ours alone.
            if sql.lock_sop is not None:
                conn.execute(sql.lock_sop, {"sop": key.sop_uid})
            if conn.execute(sql.path_recorded, {"sop": key.sop_uid, "path": str(staged.relative_path)}
                            ).first() is None:
                staged.final_path.unlink(missing_ok=True)

    def _sql(self, conn: Connection) -> CatalogStatements:
        name = conn.dialect.name
        statements = self._statements.get(name)
        if statements is None:
            statements = self._statements[name] = CatalogStatements.for_dialect(name)
        return statements

    def _record(self, conn: Connection, record: InstanceRecord, staged: StagedInstance,
                now: datetime) -> RecordOutcome:
        sql = self._sql(conn)
        sop = {"sop": record.key.sop_uid}
        if sql.lock_sop is not None:
            conn.execute(sql.lock_sop, sop)
        current = conn.execute(sql.current, sop).one_or_none()
        if current is not None and not current.deleted:
            if not (staged.root / current.path).is_file() and self._lost(conn, sql, record.key.sop_uid,
                                                                          current, staged):
                # Lost out of band (a file removed by hand, a damaged disk): the resend is the only
                # copy the node will get, and without it the study can never be analysed again.
                log.warning("SOP Instance %s: its stored file %s is missing; storing the instance sent "
                            "again", record.key.sop_uid, current.path)
            elif (current.sha256 == staged.sha256 or staged.holds_data_set_of(current.path)
                  or staged.holds_image_of(current.path)):
                self._touch(conn, sql, record, now)
                return RecordOutcome.DUPLICATE
        study_id: int = conn.execute(sql.upsert_study, {"uid": record.key.study_uid, "now": now}).scalar_one()
        # Read once the study's row is ours: retention records its deletions under that lock,
        # so an instance stored after a deletion is received after it.
        received_at = max(now, self._clock())
        description = record.series_description
        conn.execute(sql.upsert_series, {
            "study_id": study_id, "series_uid": record.key.series_uid, "modality": record.modality,
            "series_number": record.series_number,
            "description": None if description is None else description[:_DESCRIPTION_LENGTH]})
        series_id = self._series_id(conn, sql, study_id, record.key)
        version = 1
        if current is not None:
            version = current.version + 1
            conn.execute(sql.retire, {"instance_id": current.id})
            if current.study_id != study_id:  # the earlier version's study lost an instance
                conn.execute(sql.reopen, {"study_id": current.study_id, "now": now})
        staged.use_version(version)
        conn.execute(sql.insert_instance, {
            "series_id": series_id, "association_id": record.association_id,
            "sop_instance_uid": record.key.sop_uid, "version": version, "is_current": True,
            "sop_class_uid": record.sop_class_uid, "transfer_syntax_uid": record.transfer_syntax_uid,
            "path": str(staged.relative_path), "size_bytes": staged.size, "sha256": staged.sha256,
            "received_at": received_at})
        if record.association_id is not None:
            conn.execute(sql.count_association, {"association_id": record.association_id})
            self._note_association(conn, sql, record.association_id, study_id, now)
        staged.commit()
        if current is None:
            return RecordOutcome.STORED
        return RecordOutcome.RESTORED if current.sha256 == staged.sha256 else RecordOutcome.NEW_VERSION

    @staticmethod
    def _lost(conn: Connection, sql: CatalogStatements, sop: str, current: Row[Any],
              staged: StagedInstance) -> bool:
        """Whether the current version's missing file was lost, rather than looked for under the wrong root.

        Lost when the root carries the store's marker, or another file of its study
        is where its row says. When neither (an unmounted volume, another folder's
        storage), a new version written here would retire the good one on the right
        disk; such a resend stays a duplicate.
        """
        others = conn.execute(sql.study_paths, {"study_id": current.study_id, "sop": sop}).scalars()
        if holds_store(staged.root, others):
            return True
        log.error("SOP Instance %s: its stored file %s is missing, and so are the store's marker and "
                  "the other files of its study under %s: not taken as lost (a resend of it is a "
                  "duplicate); check storage.root", sop, current.path, staged.root)
        return False

    def _touch(self, conn: Connection, sql: CatalogStatements, record: InstanceRecord, now: datetime) -> None:
        # A resend made of duplicates is still a sender at work: while the study is
        # receiving its quiet period restarts. A finished study stays finished: its
        # content did not change.
        uid = {"uid": record.key.study_uid}
        study_id = conn.execute(sql.touch_receiving, {**uid, "now": now}).scalar_one_or_none()
        if study_id is None:
            study_id = conn.execute(sql.study_id, uid).scalar_one_or_none()
        if study_id is not None and record.association_id is not None:
            self._note_association(conn, sql, record.association_id, study_id, now)

    @staticmethod
    def _note_association(conn: Connection, sql: CatalogStatements, association_id: int, study_id: int,
                          now: datetime) -> None:
        conn.execute(sql.note_association,
                     {"association_id": association_id, "study_id": study_id, "now": now})

    @staticmethod
    def _series_id(conn: Connection, sql: CatalogStatements, study_id: int, key: InstanceKey) -> int:
        series_id, owner = conn.execute(sql.series_owner, {"series_uid": key.series_uid}).one()
        if owner != study_id:
            raise CatalogConflict(
                f"series {key.series_uid} is already stored under another study than {key.study_uid}")
        result: int = series_id
        return result
