"""Whether two stored files hold the same image in different encodings.

A PACS may forward a study it first sent uncompressed in a lossless
compressed transfer syntax (JPEG-LS, RLE, JPEG lossless), or in another
uncompressed one. The bytes differ, the instance does not: taken for other
content, every instance became a new version, the study was analysed again
and its results were delivered a second time. Two files are the same image
when every attribute but the pixel data is equal and the decoded pixels
are equal; a lossy encoding decodes to other pixels and stays other content.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

log = logging.getLogger(__name__)

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
# DCMTK's lossless JPEG encoder adds a Derivation Description naming the compression
_ENCODER_NOTES = frozenset({Tag(0x0008, 0x2111)})
# What pydicom raises on a file it cannot read or a pixel encoding it cannot decode
_UNREADABLE = (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, NotImplementedError,
               RuntimeError)


def same_image(first: Path, second: Path) -> bool:
    """Whether ``first`` and ``second`` hold the same data set up to the transfer syntax.

    False when either cannot be read or decoded: the caller keeps it as other content.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings quote values, a patient's among them
            a, b = dcmread(first), dcmread(second)
            if _attributes(a) != _attributes(b):
                return False
            if (_PIXEL_DATA in a) != (_PIXEL_DATA in b):
                return False
            return _PIXEL_DATA not in a or bool(np.array_equal(a.pixel_array, b.pixel_array))
    except _UNREADABLE as exc:
        log.debug("cannot compare %s with %s as images: %s", first.name, second.name, type(exc).__name__)
        return False


def _attributes(ds: Dataset) -> dict[object, object]:
    return {elem.tag: elem.value for elem in ds
            if elem.tag != _PIXEL_DATA and elem.tag not in _ENCODER_NOTES}
