"""Checks on a received data set before anything is written.

The header is read from the chunked-receive file without the pixel data. A
data set that cannot be stored raises :class:`Rejection`, the receiver's
root error, carrying the C-STORE failure status and a comment for the peer.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.receiver.negotiation import MODALITY, STORAGE_SOP_CLASSES
from node.storage import InstanceKey, is_storable_uid

# C-STORE failure statuses (PS3.4 B.2.3; 0xC000-0xCFFF is "cannot understand").
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
UID_MISSING = 0xC001
UID_INVALID = 0xC002
SOP_INSTANCE_MISMATCH = 0xC003
SERIES_CONFLICT = 0xC004
PROCESSING_FAILURE = 0x0110

# What pydicom raises on bytes that are not a well-formed data set.
_PARSE_ERRORS = (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, IndexError,
                 OverflowError, NotImplementedError, struct.error, zlib.error)


class Rejection(Exception):
    """The C-STORE is answered with ``status``; ``comment`` says why (no patient data)."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


@dataclass(frozen=True)
class Header:
    key: InstanceKey
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    series_number: int | None
    series_description: str | None


def read_header(path: Path, affected_sop_class: str, affected_sop_instance: str) -> Header:
    """Read and check the data set at ``path`` against the C-STORE command's UIDs."""
    try:
        dataset = dcmread(path, stop_before_pixels=True)
        values = _values(dataset)
    except _PARSE_ERRORS as exc:
        raise Rejection(CANNOT_UNDERSTAND, f"not a readable DICOM data set: {type(exc).__name__}") from exc
    return _check(values, affected_sop_class, affected_sop_instance)


def _values(dataset: Dataset) -> dict[str, object]:
    # Values are converted lazily; touching them here keeps decoding errors inside read_header.
    names = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
             "Modality", "SeriesNumber", "SeriesDescription")
    values: dict[str, object] = {name: dataset.get(name) for name in names}
    values["TransferSyntaxUID"] = dataset.file_meta.get("TransferSyntaxUID")
    return values


def _check(values: dict[str, object], affected_sop_class: str, affected_sop_instance: str) -> Header:
    for name in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"):
        value = values[name]
        if value is None or str(value) == "":
            raise Rejection(UID_MISSING, f"{name} is missing")
        if not is_storable_uid(str(value)):
            raise Rejection(UID_INVALID, f"{name} is not a valid UID")
    sop_class = str(values["SOPClassUID"])
    if sop_class != affected_sop_class or sop_class not in STORAGE_SOP_CLASSES:
        raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        f"SOPClassUID {sop_class} is not the negotiated {affected_sop_class}")
    sop_instance = str(values["SOPInstanceUID"])
    if sop_instance != affected_sop_instance:
        raise Rejection(SOP_INSTANCE_MISMATCH, "SOPInstanceUID differs from the command's")
    modality = str(values["Modality"] or "")
    if modality != MODALITY:
        raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        f"Modality is {modality[:16]!r}, not {MODALITY}")
    description = values["SeriesDescription"]
    return Header(
        key=InstanceKey(str(values["StudyInstanceUID"]), str(values["SeriesInstanceUID"]), sop_instance),
        sop_class_uid=sop_class,
        transfer_syntax_uid=str(values["TransferSyntaxUID"]),
        modality=modality,
        series_number=_as_int(values["SeriesNumber"]),
        series_description=None if description is None else str(description),
    )


def _as_int(value: object) -> int | None:
    # Series Number is IS (up to 12 characters); keep what fits the INTEGER column.
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None
