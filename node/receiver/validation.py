"""Checks on a received data set before anything is written.

The header is read from the chunked-receive file without the pixel data; of
native (uncompressed) Pixel Data only the element's length is read, and it
must fit the image (a 500 MB multi-frame object is never loaded). A data set
that cannot be stored raises :class:`Rejection`, the receiver's root error,
carrying the C-STORE failure status and a comment for the peer.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator, read_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.receiver.negotiation import MODALITY, STORAGE_SOP_CLASSES
from node.storage import InstanceKey, is_storable_uid
from node.storage.files import data_set_offset

# C-STORE failure statuses (PS3.4 B.2.3; 0xC000-0xCFFF is "cannot understand").
SOP_CLASS_NOT_SUPPORTED = 0x0122  # a general DIMSE status (PS3.7 Annex C)
OUT_OF_RESOURCES = 0xA700
# Also "Refused: Out of Resources" (0xA7xx), which senders take as "try again later"; a code of
# its own tells a database that failed from a full disk in the log and the metrics.
DATABASE_UNAVAILABLE = 0xA701
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


PIXEL_DATA = Tag(0x7FE0, 0x0010)
# Negotiated syntaxes with native Pixel Data; encapsulated (compressed) Pixel Data is not length-checked.
_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_INFLATE_CHUNK = 1 << 20


class Rejection(Exception):
    """The C-STORE is answered with ``status``; ``comment`` says why (no patient data).

    The comment goes on the wire as an Error Comment, an LO of at most 64
    characters, so it names no UID: cut there, one read as a different UID.
    ``detail``, for the log, may (it defaults to the comment).
    """

    def __init__(self, status: int, comment: str, detail: str | None = None) -> None:
        super().__init__(detail or comment)
        self.status = status
        self.comment = comment
        self.detail = detail or comment


@dataclass(frozen=True)
class Header:
    key: InstanceKey
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    series_number: int | None
    series_description: str | None


def read_header(path: Path, affected_sop_class: str, affected_sop_instance: str, *,
                max_inflated_bytes: int) -> Header:
    """Read and check the data set at ``path`` against the C-STORE command's UIDs.

    A deflated data set is inflated in memory to be read, so one that would
    inflate past ``max_inflated_bytes`` is refused before that.
    """
    if max_inflated_bytes < 1:
        raise ValueError(f"max_inflated_bytes must be >= 1, got {max_inflated_bytes}")
    try:
        deflated = _check_inflated_size(path, max_inflated_bytes)
        with path.open("rb") as source:
            dataset = dcmread(source, stop_before_pixels=not deflated)
            malformed = _structure_problem(dataset)
            miscoded = _encoding_problem(source, path, dataset)
            values = _values(dataset)
            pixel_bytes = None if malformed else _pixel_data_length(source, dataset, path)
    except _PARSE_ERRORS as exc:
        raise Rejection(CANNOT_UNDERSTAND, f"not a readable DICOM data set: {type(exc).__name__}") from exc
    header = _check(values, affected_sop_class, affected_sop_instance, malformed)
    if miscoded is not None:
        raise Rejection(CANNOT_UNDERSTAND, miscoded)
    if pixel_bytes is None:
        # an MR image without its image was acknowledged, and its study then skipped in silence
        if malformed is not None:
            raise Rejection(CANNOT_UNDERSTAND, f"not a readable DICOM data set: {malformed}")
        raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data is missing")
    if header.transfer_syntax_uid in _NATIVE_SYNTAXES:
        _check_pixel_data_length(values, pixel_bytes)
    return header


def _structure_problem(dataset: Dataset) -> str | None:
    """Why the top-level elements are not a DICOM data set, or None.

    pydicom reads almost any bytes as elements: random bytes after a valid
    file meta header come out as a few elements with odd tags, in no order,
    the last one running past the end of the data.
    """
    previous = -1
    for tag in dataset.keys():  # noqa: SIM118 - keys() is in the order read, iteration is sorted
        if tag <= previous:
            return "elements out of order"
        previous = tag
        raw = dataset.get_item(tag)
        if (isinstance(raw, RawDataElement) and raw.value is not None
                and raw.length != _UNDEFINED_LENGTH and len(raw.value) < raw.length):
            return "an element runs past its end"
    return None


def _encoding_problem(source: BinaryIO, path: Path, dataset: Dataset) -> str | None:
    """Why the data set is not in the transfer syntax it came in, or None.

    pydicom reads Implicit VR bytes sent on an Explicit VR context and the
    other way round (it guesses, with a warning, and reports the syntax's
    encoding); stored byte for byte under the negotiated syntax's file meta,
    they were a file DCMTK could not read. The first element tells: explicit
    VR puts two upper-case letters after its tag. ``source`` is left where it was.
    """
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    offset = data_set_offset(path)
    if syntax is None or offset is None or syntax == DeflatedExplicitVRLittleEndian:
        return None
    where = source.tell()
    source.seek(offset)
    first = source.read(6)
    source.seek(where)
    if len(first) < 6:
        return None
    explicit = first[4:6].isalpha() and first[4:6].isupper()
    if explicit == (not UID(syntax).is_implicit_VR):
        return None
    found = "explicit" if explicit else "implicit"
    return f"data set encoded {found} VR, not in the negotiated syntax"


def _pixel_data_length(source: BinaryIO, dataset: Dataset, path: Path) -> int | None:
    """Bytes of Pixel Data in the file (never more than are there), or None without Pixel Data.

    Only the element's header is read: the value is skipped, not loaded.
    """
    implicit, little = dataset.original_encoding
    if implicit is None or little is None:
        return None
    if dataset.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # deflated: pydicom inflates the whole data set into memory to read even its header (deferring
        # does not apply to it), so it was read with its pixels; count them
        pixels = dataset.get(PIXEL_DATA)
        return len(pixels.value) if pixels is not None and isinstance(pixels.value, bytes) else None
    # stop_before_pixels left the file at the start of the element it stopped before
    raw = next(data_element_generator(source, implicit, little, defer_size=0), None)
    if not isinstance(raw, RawDataElement) or raw.tag != PIXEL_DATA:
        return None
    if raw.length == _UNDEFINED_LENGTH:
        return _UNDEFINED_LENGTH
    return min(raw.length, max(0, path.stat().st_size - raw.value_tell))


def _check_inflated_size(path: Path, limit: int) -> bool:
    """Whether the data set is deflated; if so, refuse it when it inflates past ``limit`` bytes.

    Inflated in a stream and thrown away, a megabyte at a time: a few hundred
    kilobytes of deflated zeros would otherwise take gigabytes of memory.
    """
    meta = read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return False
    offset = data_set_offset(path)
    if offset is None:
        raise Rejection(CANNOT_UNDERSTAND, "deflated data set without a File Meta Information Group Length")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    with path.open("rb") as source:
        source.seek(offset)
        while (pending := source.read(_INFLATE_CHUNK)) and not inflater.eof:
            while pending:
                inflated += len(inflater.decompress(pending, _INFLATE_CHUNK))
                if inflated > limit:
                    raise Rejection(OUT_OF_RESOURCES,
                                    f"deflated data set inflates past the maximum of {limit} bytes")
                pending = inflater.unconsumed_tail
    return True


def _check_pixel_data_length(values: dict[str, object], pixel_bytes: int) -> None:
    """Native Pixel Data must hold Rows x Columns x Samples x Frames x BitsAllocated bits."""
    dimensions: dict[str, int] = {}
    for name, default in (("Rows", None), ("Columns", None), ("BitsAllocated", None),
                          ("SamplesPerPixel", 1), ("NumberOfFrames", 1)):
        number = _as_int(values[name]) if values[name] not in (None, "") else default
        if number is None or number < 1:
            raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"Pixel Data without a valid {name}")
        dimensions[name] = number
    bits = (dimensions["Rows"] * dimensions["Columns"] * dimensions["SamplesPerPixel"]
            * dimensions["NumberOfFrames"] * dimensions["BitsAllocated"])
    expected = (bits + 7) // 8
    # a value of odd length is padded to even with one byte
    if pixel_bytes != expected and not (expected % 2 == 1 and pixel_bytes == expected + 1):
        raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        f"Pixel Data is {pixel_bytes} bytes, expected {expected}")


def _values(dataset: Dataset) -> dict[str, object]:
    # Values are converted lazily; touching them here keeps decoding errors inside read_header.
    names = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
             "Modality", "SeriesNumber", "SeriesDescription",
             "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames")
    values: dict[str, object] = {name: dataset.get(name) for name in names}
    values["TransferSyntaxUID"] = dataset.file_meta.get("TransferSyntaxUID")
    return values


def _check(values: dict[str, object], affected_sop_class: str, affected_sop_instance: str,
           malformed: str | None) -> Header:
    for name in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"):
        value = values[name]
        if value is None or str(value) == "":
            if malformed is not None:
                # not a data set lacking a UID, but bytes that are no data set at all
                raise Rejection(CANNOT_UNDERSTAND, f"not a readable DICOM data set: {malformed}")
            raise Rejection(UID_MISSING, f"{name} is missing")
        if not is_storable_uid(str(value)):
            raise Rejection(UID_INVALID, f"{name} is not a valid UID")
    sop_class = str(values["SOPClassUID"])
    if sop_class != affected_sop_class or sop_class not in STORAGE_SOP_CLASSES:
        raise Rejection(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOPClassUID is not the negotiated SOP class",
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
