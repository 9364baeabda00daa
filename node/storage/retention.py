"""Retention: delete a study's received images once its results were delivered long enough ago.

A study qualifies when its current analysis result has deliveries, all of
them delivered, the last one at least ``delete_after`` ago, and the study
is not receiving again. Only the instance files under the storage root are
deleted; instance rows, audit rows, result objects and findings stay. Each
deletion is recorded (``retention_deletions`` and a study event), so a study
is cleaned once, and again only if instances arrive after that. The record is
written before the files are deleted, under the study's row lock, so what is
stored meanwhile is not counted as deleted. A node stopped between the two
leaves a record without its study event: a run at least one ``interval``
later deletes that record's files then, and completes the record.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Exists, SQLColumnExpression, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from node.db.audit import Delivery, DeliveryStatus, RetentionDeletion, StudyEvent, StudyStage
from node.db.models import AnalysisResult, Instance, Series, Study, StudyStatus, utcnow
from node.periodic import Periodic
from node.settings import RetentionSettings
from node.storage.files import holds_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deleted:
    study_instance_uid: str
    files_deleted: int
    bytes_deleted: int
    files_missing: int


def deleted_by_retention(study_id: SQLColumnExpression[int],
                         received_at: SQLColumnExpression[datetime]) -> Exists:
    """Whether retention deleted the images of study ``study_id`` received at ``received_at``.

    A deletion covers what was received before it; what the PACS sends afterwards is on disk.
    """
    return exists(select(RetentionDeletion.id).where(RetentionDeletion.study_id == study_id,
                                                     RetentionDeletion.at >= received_at))


def due_studies(session: Session, delete_after: timedelta, now: datetime,
                only: int | None = None) -> list[tuple[int, str]]:
    """(id, UID) of the studies whose images may be deleted now (of study ``only``, if given)."""
    cutoff = now - delete_after
    current = (select(AnalysisResult.id).where(AnalysisResult.study_id == Study.id,
                                               AnalysisResult.outcome == "analysed",
                                               AnalysisResult.superseded_by_id.is_(None))
               .correlate(Study).scalar_subquery())
    delivered = (select(func.count(Delivery.id))
                 .where(Delivery.analysis_result_id == current, Delivery.status == DeliveryStatus.DELIVERED,
                        Delivery.delivered_at <= cutoff).correlate(Study).scalar_subquery())
    total = (select(func.count(Delivery.id)).where(Delivery.analysis_result_id == current)
             .correlate(Study).scalar_subquery())
    cleaned = deleted_by_retention(Study.id, Study.last_received_at)
    # What arrived within delete_after stays that long too: part of a cleaned study sent again is
    # withheld until the rest arrives, and deleting it at the next run lost it before it could.
    query = (select(Study.id, Study.study_instance_uid)
             .where(Study.status.in_([StudyStatus.ANALYSED]), total > 0, delivered == total, ~cleaned,
                    Study.last_received_at <= cutoff)
             .order_by(Study.id))
    if only is not None:
        query = query.where(Study.id == only).with_for_update(of=Study)
    rows = session.execute(query).all()
    return [(study_id, uid) for study_id, uid in rows]


def interrupted_deletions(session: Session, before: datetime) -> list[tuple[int, int, str, datetime]]:
    """(record id, study id, UID, recorded at) of deletions recorded before ``before`` whose
    files were never reported deleted: the node stopped between the record and the event."""
    reported = exists(select(StudyEvent.id).where(StudyEvent.study_id == RetentionDeletion.study_id,
                                                  StudyEvent.stage == StudyStage.IMAGES_DELETED,
                                                  StudyEvent.at >= RetentionDeletion.at))
    rows = session.execute(
        select(RetentionDeletion.id, Study.id, Study.study_instance_uid, RetentionDeletion.at)
        .join(Study, Study.id == RetentionDeletion.study_id)
        .where(RetentionDeletion.at < before, ~reported)
        .order_by(RetentionDeletion.id)).all()
    return [(record_id, study_id, uid, at) for record_id, study_id, uid, at in rows]


class Retention:
    """Deletes due studies' files under ``storage_root``; ``run_once`` returns what it deleted."""

    def __init__(self, settings: RetentionSettings, storage_root: Path, sessions: sessionmaker[Session],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._settings = settings
        self._root = storage_root.resolve()
        self._sessions = sessions
        self._clock = clock

    def run_once(self, *, dry_run: bool = False) -> list[Deleted]:
        if not self._root.is_dir():
            # Every file would count as already missing, and the studies as cleaned: their
            # images would then be kept for ever and treated as gone.
            raise FileNotFoundError(f"storage root {self._root} is not a folder: nothing deleted or recorded "
                                    "(a relative storage.root is taken from the folder the node runs in)")
        with self._sessions() as session:
            due = due_studies(session, self._settings.delete_after, self._clock())
            # a run younger than an interval may still be deleting (another node's)
            unfinished = interrupted_deletions(session, self._clock() - self._settings.interval)
        done: list[Deleted] = []
        for record_id, study_id, uid, at in unfinished:
            deleted = (self._preview(study_id, uid, at) if dry_run
                       else self._finish(record_id, study_id, uid, at))
            if deleted is not None:
                done.append(deleted)
        for study_id, uid in due:
            deleted = self._preview(study_id, uid, self._clock()) if dry_run else self._clean(study_id, uid)
            if deleted is not None:
                done.append(deleted)
        return done

    def _preview(self, study_id: int, uid: str, at: datetime) -> Deleted | None:
        """What a deletion of the files received up to ``at`` would delete now; None where it would
        skip the study."""
        paths = self._paths_at(study_id, at)
        return None if self._none_present(uid, paths) else self._delete(uid, paths, dry_run=True)

    def _finish(self, record_id: int, study_id: int, uid: str, at: datetime) -> Deleted | None:
        """Delete the files of the deletion recorded at ``at`` that was interrupted, and complete it."""
        paths = self._paths_at(study_id, at)
        if self._none_present(uid, paths):
            return None
        log.warning("retention: study %s: finishing the deletion recorded at %s, which was interrupted",
                    uid, at.isoformat())
        return self._complete(record_id, study_id, self._delete(uid, paths, dry_run=False))

    def _none_present(self, uid: str, paths: list[str]) -> bool:
        """Whether the study has files on record, and the root shows neither the store's marker
        nor one of them where its row says (the wrong folder, not the study's files gone)."""
        if not paths or holds_store(self._root, paths):
            return False
        log.warning("retention: none of the %d file(s) of study %s, nor the store's marker, is under %s: "
                    "nothing deleted or recorded; check storage.root", len(paths), uid, self._root)
        return True

    def _clean(self, study_id: int, uid: str) -> Deleted | None:
        """Delete one study's files; None if it stopped being due (an instance arrived)."""
        with self._sessions.begin() as session:
            # The study row stays locked (on SQLite the whole database) from the check to the
            # record, so no instance is stored in between. The record comes first: an instance
            # stored while the files are being deleted arrives after it and is not counted
            # as deleted.
            at = self._clock()
            if not due_studies(session, self._settings.delete_after, at, only=study_id):
                return None
            paths = _paths(session, study_id, at)
            if self._none_present(uid, paths):
                return None
            record = RetentionDeletion(study_id=study_id, at=at, files_deleted=0, bytes_deleted=0,
                                       files_missing=0)
            session.add(record)
            session.flush()
            record_id = record.id
        return self._complete(record_id, study_id, self._delete(uid, paths, dry_run=False))

    def _paths_at(self, study_id: int, at: datetime) -> list[str]:
        with self._sessions() as session:
            return _paths(session, study_id, at)

    def _complete(self, record_id: int, study_id: int, deleted: Deleted) -> Deleted:
        """Fill in the deletion's record and add its study event: the deletion is done."""
        with self._sessions.begin() as session:
            done = session.get_one(RetentionDeletion, record_id)
            done.files_deleted, done.bytes_deleted = deleted.files_deleted, deleted.bytes_deleted
            done.files_missing = deleted.files_missing
            session.add(StudyEvent(study_id=study_id, at=self._clock(), stage=StudyStage.IMAGES_DELETED,
                                   detail=f"{deleted.files_deleted} file(s), {deleted.bytes_deleted} "
                                          f"bytes deleted; {deleted.files_missing} already gone"))
        log.info("retention: study %s: %d file(s) deleted", deleted.study_instance_uid, deleted.files_deleted)
        return deleted

    def _delete(self, uid: str, paths: list[str], dry_run: bool) -> Deleted:
        files = size = missing = 0
        folders: set[Path] = set()
        for relative in paths:
            path = (self._root / relative).resolve()
            if not path.is_relative_to(self._root):
                log.error("retention: instance path %r of study %s leaves the storage root; kept",
                          relative, uid)
                continue
            try:
                length = path.stat().st_size
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                missing += 1
                continue
            files += 1
            size += length
            folders.update(p for p in path.parents if p.is_relative_to(self._root) and p != self._root)
        if not dry_run:
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                # a folder still holding other files stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return Deleted(uid, files, size, missing)


def _paths(session: Session, study_id: int, at: datetime) -> list[str]:
    """The files of the study's instances (every version) received by ``at`` and after its
    deletion before that: those an earlier deletion removed are not counted as missing again."""
    before = session.scalar(select(func.max(RetentionDeletion.at))
                            .where(RetentionDeletion.study_id == study_id, RetentionDeletion.at < at))
    query = (select(Instance.path).join(Series, Series.id == Instance.series_id)
             .where(Series.study_id == study_id, Instance.received_at <= at))
    if before is not None:
        query = query.where(Instance.received_at > before)
    return list(session.scalars(query))


class RetentionMonitor(Periodic):
    """A thread running :meth:`Retention.run_once` every ``interval``."""

    def __init__(self, retention: Retention, interval: timedelta) -> None:
        super().__init__("retention", retention.run_once, interval, (SQLAlchemyError, OSError))
