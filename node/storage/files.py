"""Durable instance files under ``ROOT/<study uid>/<series uid>/<sop uid>.dcm``.

An instance is first *staged*: copied (or, from a file the receiver wrote,
moved) into a temporary file in its final folder, hashed and fsynced.
*Committing* renames it into place and fsyncs the folder, so a file under
its final name is always complete, and survives a crash once ``commit`` has
returned. Folders created on the way are fsynced into their parents for the
same reason.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO

from node.storage.content import same_image
from node.storage.keys import InstanceKey, InstanceTooLarge, InsufficientSpace

FreeSpace = Callable[[Path], int]
_CHUNK = 1024 * 1024
_PREAMBLE = 132  # 128 bytes and "DICM"
_GROUP_LENGTH_ELEMENT = 12
_PARTIAL_SUFFIX = ".part"  # a staged instance's temporary file: ".<sop uid>.<random>.part"
# pynetdicom's chunked-receive file: NamedTemporaryFile(suffix=".dcm") in the incoming folder
_INCOMING_PATTERN = "tmp*.dcm"
INCOMING_FOLDER = ".incoming"  # under the root: where the receiver streams each data set as it arrives
STORE_MARKER = ".lumbar-sentinel-store"

log = logging.getLogger(__name__)


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path``."""
    return shutil.disk_usage(path).free


def any_in_place(root: Path, relative_paths: Iterable[str]) -> bool:
    """Whether at least one recorded file is where its row says under ``root``."""
    return any((root / relative).is_file() for relative in relative_paths)


def is_store(root: Path) -> bool:
    """Whether ``root`` carries the store's marker (:mod:`node.storage.root`)."""
    return (root / STORE_MARKER).is_file()


def holds_store(root: Path, relative_paths: Iterable[str]) -> bool:
    """Whether ``root`` is the store these recorded files were written to.

    The marker says so. Without it (a store opened by no node since the marker
    came, a volume unmounted under a running node) one of the files in place
    does; when not one is, ``root`` is more likely the wrong folder than every
    file gone, and retention and the catalog leave the rows as they are.
    """
    return is_store(root) or any_in_place(root, relative_paths)


def probe_writable(folder: Path) -> None:
    """Make ``folder`` if missing and write, fsync and delete a file in it; raises OSError if it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-") as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedInstance:
    """A fsynced temporary copy of an instance, waiting to be committed or discarded.

    Used as a context manager, it is discarded on exit unless committed.
    """

    def __init__(self, temp_path: Path, final_path: Path, relative_path: PurePosixPath,
                 sha256: str, size: int) -> None:
        self.temp_path = temp_path
        self.final_path = final_path
        self.relative_path = relative_path
        self.sha256 = sha256
        self.size = size
        self._finished = False
        self._committed = False
        self._first_version = (final_path, relative_path)

    @property
    def committed(self) -> bool:
        """Renamed to its final name (a discarded one is not)."""
        return self._committed

    @property
    def root(self) -> Path:
        """The storage root this instance is committed under."""
        final, relative = self._first_version
        return final.parents[len(relative.parts) - 1]

    def holds_data_set_of(self, relative_path: str) -> bool:
        """Whether the stored file at ``relative_path`` has this instance's data set, byte for byte.

        Only the File Meta Information may differ: the receiving library writes it
        (its version name), so a resend after an upgrade is the same instance.
        """
        try:
            ours = data_set_sha256(self.temp_path)
            return ours is not None and data_set_sha256(self.root / relative_path) == ours
        except OSError:
            return False

    def holds_image_of(self, relative_path: str) -> bool:
        """Whether the stored file at ``relative_path`` is this instance in another encoding
        (:func:`~node.storage.content.same_image`)."""
        return same_image(self.temp_path, self.root / relative_path)

    def use_version(self, version: int) -> None:
        """Commit under the name of ``version`` of the instance: ``<sop>.dcm``, then ``<sop>.v2.dcm``, ...

        Earlier versions keep their files (a re-sent instance with other content).
        """
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        final, relative = self._first_version
        if version > 1:
            name = f"{relative.stem}.v{version}{relative.suffix}"
            final, relative = final.with_name(name), relative.with_name(name)
        self.final_path, self.relative_path = final, relative

    def commit(self) -> None:
        """Move the file to its final name (replacing any orphan there) and make that durable."""
        if self._finished:
            raise RuntimeError(f"staged instance {self.relative_path} already committed or discarded")
        os.replace(self.temp_path, self.final_path)
        self._finished = self._committed = True
        # The series, study and root folders, every time: another thread may have just made the
        # series or study folder and not yet fsynced its parent, and this file hangs on that entry too.
        for folder in self.final_path.parents[:3]:
            fsync_dir(folder)

    def discard(self) -> None:
        if not self._finished:
            self._finished = True
            self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> StagedInstance:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


class InstanceStore:
    """Writes instances durably under ``root``; refuses them over size or under the free-space watermark."""

    def __init__(self, root: Path, *, min_free_bytes: int, max_instance_bytes: int,
                 free_space: FreeSpace = disk_free_bytes) -> None:
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must be >= 0, got {min_free_bytes}")
        if max_instance_bytes < 1:
            raise ValueError(f"max_instance_bytes must be >= 1, got {max_instance_bytes}")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        # On the store's volume a received data set is moved into place, not copied, and what an
        # interrupted receive leaves (a patient's images) stays in the store, where it is swept.
        # The receiver makes it once the root is found to be the store.
        self.incoming = self.root / INCOMING_FOLDER
        self.min_free_bytes = min_free_bytes
        self.max_instance_bytes = max_instance_bytes
        self._free_space = free_space

    def path_of(self, relative_path: str | PurePosixPath) -> Path:
        return self.root / relative_path

    def check_capacity(self, size: int) -> None:
        """Raise if an instance of ``size`` bytes may not be stored now."""
        if size > self.max_instance_bytes:
            raise InstanceTooLarge(
                f"instance too large: {size} bytes exceeds the maximum of {self.max_instance_bytes} bytes")
        free = self._free_space(self.root)
        if free - size < self.min_free_bytes:
            raise InsufficientSpace(
                f"disk under the free-space watermark: {free} bytes free, {size} needed, "
                f"{self.min_free_bytes} to be kept free")

    def stage(self, source: BinaryIO, key: InstanceKey) -> StagedInstance:
        """Copy ``source`` to a fsynced temporary file beside the instance's final path."""
        folder = self._ensure_folder(key)
        try:
            fd, temp_name = tempfile.mkstemp(prefix=f".{key.sop_uid}.", suffix=_PARTIAL_SUFFIX, dir=folder)
        except FileNotFoundError:  # retention removed the empty folder meanwhile
            folder = self._ensure_folder(key)
            fd, temp_name = tempfile.mkstemp(prefix=f".{key.sop_uid}.", suffix=_PARTIAL_SUFFIX, dir=folder)
        temp_path = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = self._copy(source, out)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return StagedInstance(temp_path, folder / f"{key.sop_uid}.dcm", key.relative_path, sha256, size)

    def adopt(self, received: Path, key: InstanceKey) -> StagedInstance:
        """Stage the complete file ``received`` by moving it beside its final path, then fsync it.

        A move costs no copy; a file on another file system than the store is
        copied (:meth:`stage`) and left where it is.
        """
        folder = self._ensure_folder(key)
        temp_path = folder / f".{key.sop_uid}.{secrets.token_hex(6)}{_PARTIAL_SUFFIX}"
        try:
            try:
                os.rename(received, temp_path)
            except FileNotFoundError:
                if not received.exists():
                    raise
                # retention removed the empty folder between its making and the rename
                folder = self._ensure_folder(key)
                temp_path = folder / temp_path.name
                os.rename(received, temp_path)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with received.open("rb") as source:
                return self.stage(source, key)
        try:
            with temp_path.open("rb") as moved:
                sha256, size = self._copy(moved, None)
                os.fsync(moved.fileno())
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return StagedInstance(temp_path, folder / f"{key.sop_uid}.dcm", key.relative_path, sha256, size)

    def sweep_partial(self, older_than: timedelta, now: float | None = None) -> int:
        """Delete staged and incoming files older than ``older_than``; return how many.

        A process killed between staging and committing leaves its temporary
        file behind, and an association aborted during a C-STORE leaves the
        data set streamed so far in ``incoming``: never acknowledged, so the
        sender still holds the instance. The age bar spares files another
        receiver on the same storage is writing now.
        """
        if older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative, got {older_than}")
        cutoff = (time.time() if now is None else now) - older_than.total_seconds()
        stale = [*self.root.glob(f"*/*/.*{_PARTIAL_SUFFIX}"), *self.incoming.glob(_INCOMING_PATTERN)]
        removed = 0
        for path in stale:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # committed or discarded meanwhile
                continue
        if removed:
            log.info("removed %d staged file(s) left by an interrupted receive under %s", removed, self.root)
        return removed

    def _copy(self, source: BinaryIO, out: BinaryIO | None) -> tuple[str, int]:
        """Hash ``source`` (and copy it to ``out``); its SHA-256 and size."""
        digest = hashlib.sha256()
        size = 0
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            size += len(chunk)
            if size > self.max_instance_bytes:
                raise InstanceTooLarge(
                    f"instance too large: exceeds the maximum of {self.max_instance_bytes} bytes")
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
        return digest.hexdigest(), size

    def _ensure_folder(self, key: InstanceKey) -> Path:
        parent = self.root
        for part in (key.study_uid, key.series_uid):
            folder = parent / part
            if not folder.is_dir():
                folder.mkdir(exist_ok=True)
                fsync_dir(parent)
            parent = folder
        return parent


def data_set_offset(path: Path) -> int | None:
    """Where the data set starts, after the File Meta Information; None without its group length."""
    with path.open("rb") as stream:
        head = stream.read(_PREAMBLE + _GROUP_LENGTH_ELEMENT)
    start = _PREAMBLE if head[_PREAMBLE - 4:_PREAMBLE] == b"DICM" else 0
    element = head[start:start + _GROUP_LENGTH_ELEMENT]
    # (0002,0000) UL, explicit VR little endian: tag, "UL", a 2-byte length of 4, the value
    if len(element) < _GROUP_LENGTH_ELEMENT or element[:6] != b"\x02\x00\x00\x00UL":
        return None
    (length,) = struct.unpack("<I", element[8:12])
    return start + _GROUP_LENGTH_ELEMENT + length


def data_set_sha256(path: Path) -> str | None:
    """The SHA-256 of the file's data set without its File Meta Information (None: no group length)."""
    offset = data_set_offset(path)
    if offset is None:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(offset)
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
