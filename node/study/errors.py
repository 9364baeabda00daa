"""The error types of the study boundary (DICOM series in, volumes and choices out)."""

from __future__ import annotations


class StudyError(Exception):
    """Root of every error raised by :mod:`node.study`."""


class SeriesError(StudyError, ValueError):
    """A stored series cannot be turned into one volume; the message says why."""


class StudyInputError(StudyError, ValueError):
    """The headers given for one study are inconsistent (several studies, no UIDs)."""
