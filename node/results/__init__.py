"""The DICOM objects an analysis sends back (results contract): SR, SEG and key image.

Each written object is described by a :class:`ResultObject`; the delivery
side (outbox, sender) and the audit database only need this description.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class ResultKind(StrEnum):
    SR = "sr"
    SEG = "seg"
    KEY_IMAGE = "key_image"


@dataclass(frozen=True)
class ResultObject:
    """One written DICOM result object: where it is and what it is."""

    kind: ResultKind
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    sha256: str


__all__ = ["ResultKind", "ResultObject"]
