"""The patient's identity kept out of what the node writes about a failure.

A library's message can quote the value it could not handle: pydicom a malformed date,
highdicom a sex written "male". A failed job's message is kept in ``jobs.last_error`` and
in the study's history, and its traceback is logged; the database and the logs know studies
by their UIDs only. A job handler names the identifying values it read
(:meth:`node.queue.worker.JobContext.keep_private`), and the worker replaces them in that
text before it writes any of it.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Collection, Iterator

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# The attributes of an image's header that identify its patient (from PS3.15 Table E.1-1's
# basic profile); sex, age and the like name nobody alone.
IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "AccessionNumber", "ReferringPhysicianName",
    "StudyID",
)
REDACTED = "[redacted]"
# A shorter piece (an initial, a two-digit ID) names nobody and would blank half a message.
SHORTEST = 3
_PIECES = re.compile(r"[\\^=,\s]+")
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def identifying_values(ds: Dataset) -> frozenset[str]:
    """The values of ``ds`` that identify its patient, whole and in pieces (a name's family and
    given names, each of several values), and a date in the ISO form a message may print too.

    Read as stored: the value a library could not convert is the one its message quotes.
    """
    found: set[str] = set()
    for keyword in IDENTIFYING:
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            continue
        for text in _texts(ds.get_item(tag).value):
            found.update(_variants(text.strip(" \x00")))
    return frozenset(value for value in found if len(value) >= SHORTEST)


def _texts(value: object) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, bytes):
        # the raw bytes in the two forms a message may have decoded them to
        yield value.decode("utf-8", "replace")
        yield value.decode("latin-1")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, MultiValue | list | tuple):  # several values, or a sequence's items
        for item in value:
            if not isinstance(item, Dataset):
                yield from _texts(item)
    else:  # a PersonName, a converted date
        yield str(value)


def _variants(text: str) -> Iterator[str]:
    pieces = _PIECES.split(text)
    yield text
    yield from pieces
    for piece in pieces:
        date = _DATE.fullmatch(piece)
        if date is not None:
            yield "-".join(date.groups())


def redact(text: str, private: Collection[str]) -> str:
    """``text`` with every one of ``private`` (in any case) replaced by ``[redacted]``."""
    wanted = sorted((value for value in private if len(value) >= SHORTEST), key=len, reverse=True)
    if not wanted:
        return text
    pattern = re.compile("|".join(re.escape(value) for value in wanted), re.IGNORECASE)
    return pattern.sub(REDACTED, text)


def describe(exc: BaseException, private: Collection[str]) -> str:
    """``Type: message``, redacted: what a failed job keeps."""
    return redact(f"{type(exc).__name__}: {exc}", private)


def traceback_text(exc: BaseException, private: Collection[str]) -> str:
    """The exception's traceback (with its causes), redacted: what the log keeps of it."""
    return redact("".join(traceback.format_exception(exc)).rstrip(), private)


__all__ = [
    "IDENTIFYING", "REDACTED", "SHORTEST", "describe", "identifying_values", "redact", "traceback_text",
]
