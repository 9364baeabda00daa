"""The store's marker: what tells the node's storage folder from an empty mount point.

A node started on the wrong ``storage.root`` (a volume not mounted, another
folder) finds every recorded file missing there. Without a sign of which
folder is the store, a missing file cannot be told from a lost one: a resend
of a lost study would be taken for a resend onto the wrong disk. So the store
carries a marker file, written once, when the node first opens it:

- on an empty database (a new node), or when at least one recorded file is
  in place (a store from before the marker);
- never when the database records files and not one is there: the node
  refuses to start and names the folder (:class:`WrongStorageRoot`).

With the marker in place a missing file is a lost file, and a resend stores
it again (:mod:`node.storage.catalog`); without it, only when another file
of its study is still in place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Instance, Series
from node.storage.files import STORE_MARKER, any_in_place, fsync_dir, is_store
from node.storage.keys import StorageError
from node.storage.retention import deleted_by_retention

MARKER = STORE_MARKER
# the most recent files the database records that retention has not deleted: enough
# to find one in place on a store whose older files were lost
_SAMPLE = 50

log = logging.getLogger(__name__)


class WrongStorageRoot(StorageError):
    """``storage.root`` holds neither the marker nor any file the database records."""


def open_store(root: Path, sessions: sessionmaker[Session]) -> None:
    """Check that ``root`` is the database's store, and mark it so once.

    Raises :class:`WrongStorageRoot` when the database records files and not
    one of the most recent is under ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    if is_store(root):
        return
    with sessions() as session:
        paths = session.scalars(
            select(Instance.path)
            .join(Series, Series.id == Instance.series_id)
            .where(Instance.is_current.is_(True),
                   ~deleted_by_retention(Series.study_id, Instance.received_at))
            .order_by(Instance.id.desc())
            .limit(_SAMPLE)
        ).all()
    if paths and not any_in_place(root, paths):
        raise WrongStorageRoot(
            f"storage.root {root} is not this database's store: it has no {MARKER} file and none of the "
            f"{len(paths)} most recent files the database records is there (is its volume mounted?). "
            f"If it is the right folder and those files are lost, create the marker "
            f"(touch {root / MARKER}) and send the studies again")
    marker = root / MARKER
    temp = root / f"{MARKER}.part"
    with open(temp, "w", encoding="utf-8") as out:
        out.write("The storage folder of a Lumbar Sentinel node. Keep this file: without it the node "
                  "cannot tell this folder from an empty mount point.\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, marker)
    fsync_dir(root)
    log.info("storage.root %s marked as the node's store (%s)", root, MARKER)


__all__ = ["MARKER", "WrongStorageRoot", "open_store"]
