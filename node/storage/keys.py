"""What names a stored instance: its UIDs, checked before they touch the disk.

A UID becomes a path component, so it must be digits and dots only, with no
empty component, at most 64 characters. This is pydicom's ``UID.is_valid``
except that components with a leading zero (``1.2.03``), which PS3.5 forbids
but older modalities do send, are accepted: refusing them would lose real
studies and they are just as safe on disk.

Errors of the storage boundary all derive from :class:`StorageError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


class StorageError(Exception):
    """Root of every error raised by ``node.storage``."""


class InvalidUID(StorageError, ValueError):
    """A UID that must not name anything on disk (or in the catalog)."""


class InstanceTooLarge(StorageError):
    """An instance over the configured maximum size."""


class InsufficientSpace(StorageError):
    """Storing an instance would take free disk space under the watermark."""


class CatalogConflict(StorageError):
    """The instance contradicts what the catalog already holds (e.g. a series in another study)."""


MAX_UID_LENGTH = 64
_STORABLE_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_storable_uid(value: object) -> bool:
    """``True`` if ``value`` is a UID string that may name a file or folder."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_UID_LENGTH
        and _STORABLE_UID.fullmatch(value) is not None
    )


def require_uid(name: str, value: object) -> str:
    """Return ``value`` if it is a storable UID; raise :class:`InvalidUID` naming ``name`` otherwise."""
    if not is_storable_uid(value):
        shown = repr(value)[:80]
        raise InvalidUID(f"{name} is not a valid UID (digits and dots, at most 64 characters): {shown}")
    return str(value)


@dataclass(frozen=True)
class InstanceKey:
    """The three UIDs that place an instance on disk, validated on creation."""

    study_uid: str
    series_uid: str
    sop_uid: str

    def __post_init__(self) -> None:
        require_uid("study_uid", self.study_uid)
        require_uid("series_uid", self.series_uid)
        require_uid("sop_uid", self.sop_uid)

    @property
    def relative_path(self) -> PurePosixPath:
        return PurePosixPath(self.study_uid, self.series_uid, f"{self.sop_uid}.dcm")
