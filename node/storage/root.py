"""The store's marker: what tells the node's storage folder from an empty mount point.

A node started on the wrong ``storage.root`` (a volume not mounted, another
folder) finds every recorded file missing there. Without a sign of which
folder is the store, a missing file cannot be told from a lost one: a resend
of a lost study would be taken for a resend onto the wrong disk. So the store
carries a marker file, written when the node first opens it.

At every start-up, when the database records files and not one of the most
recent is there, the node refuses to start and names the folder
(:class:`WrongStorageRoot`), marker or not; otherwise it writes the marker
if missing (a new node, a store from before the marker). So the marker is in
place only on a folder found to hold the store.

With the marker in place a missing file is a lost file, and a resend stores
it again (:mod:`node.storage.catalog`); without it (a volume unmounted under
a running node), only when another file of its study is still in place.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Instance, Series
from node.storage.files import STORE_MARKER, any_in_place, fsync_dir, is_store
from node.storage.keys import StorageError
from node.storage.retention import deleted_by_retention

# the most recent files the database records that retention has not deleted: enough
# to find one in place on a store whose older files were lost
_SAMPLE = 50

log = logging.getLogger(__name__)


class WrongStorageRoot(StorageError):
    """``storage.root`` holds none of the most recent files the database records."""


def open_store(root: Path, sessions: sessionmaker[Session], *, verify: bool = True) -> None:
    """Check that ``root`` is the database's store, and mark it so once.

    Raises :class:`WrongStorageRoot` when the database records files and not
    one of the most recent is under ``root``, marker or not: a folder marked
    once (say, before a volume was mounted over it) is not the store when the
    volume is missing. ``verify`` False skips that check (every file lost).
    """
    root.mkdir(parents=True, exist_ok=True)
    marked = is_store(root)
    if verify:
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
            held = f" (it holds a {STORE_MARKER} file)" if marked else ""
            raise WrongStorageRoot(
                f"storage.root {root} is not this database's store: none of the {len(paths)} most recent "
                f"files the database records is there{held}. "
                "Is its volume mounted? If it is the right folder, restore the files from a backup; if "
                "they are lost for good, start once with storage.verify_root = false and have the PACS "
                "send the studies again")
    if marked:
        return
    # A name of its own per process: several processes may open a new store at once.
    fd, temp = tempfile.mkstemp(prefix=f"{STORE_MARKER}.", suffix=".part", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("The storage folder of a Lumbar Sentinel node. Keep this file: without it the node "
                  "cannot tell this folder from an empty mount point.\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, root / STORE_MARKER)
    fsync_dir(root)
    log.info("storage.root %s marked as the node's store (%s)", root, STORE_MARKER)


def store_problem(root: Path, sessions: sessionmaker[Session], *, verify: bool = True) -> str | None:
    """:func:`open_store`, saying why ``serve`` or ``worker`` cannot start on ``root`` (None: they can)."""
    try:
        open_store(root, sessions, verify=verify)
    except (WrongStorageRoot, OSError) as exc:  # OSError: a root that cannot be created or written
        return f"cannot start: {exc}"
    return None


__all__ = ["STORE_MARKER", "WrongStorageRoot", "open_store", "store_problem"]
