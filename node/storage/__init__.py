"""Durable storage of received instances: files on disk and their catalog rows."""

from node.storage.catalog import InstanceCatalog, InstanceRecord, RecordOutcome
from node.storage.files import InstanceStore, StagedInstance, disk_free_bytes, sha256_of
from node.storage.keys import (
    CatalogConflict,
    InstanceKey,
    InstanceTooLarge,
    InsufficientSpace,
    InvalidUID,
    StorageError,
    is_storable_uid,
    require_uid,
)

__all__ = [
    "CatalogConflict",
    "InstanceCatalog",
    "InstanceKey",
    "InstanceRecord",
    "InstanceStore",
    "InstanceTooLarge",
    "InsufficientSpace",
    "InvalidUID",
    "RecordOutcome",
    "StagedInstance",
    "StorageError",
    "disk_free_bytes",
    "is_storable_uid",
    "require_uid",
    "sha256_of",
]
