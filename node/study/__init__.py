"""DICOM series to volumes, sequence classification and series selection per study.

The I/O side of the analysis: headers and pixel data come from stored files,
and what leaves is :class:`analysis.volume.Volume` plus frozen descriptions.
"""

from node.study.classify import SeriesClassification, classify_series, plane_from_orientation
from node.study.errors import SeriesError, StudyError, StudyInputError
from node.study.folder import DicomFolder, SeriesFiles, SkippedFile, StudyFiles, group_dicom_folder
from node.study.geometry import GeometryTolerance
from node.study.parameters import AcquisitionParameters
from node.study.select import SeriesChoice, SeriesSummary, StudySelection, select_series, summarize_series
from node.study.volume import SeriesVolume, SliceSource, read_series, read_volume

__all__ = [
    "AcquisitionParameters",
    "DicomFolder",
    "GeometryTolerance",
    "SeriesChoice",
    "SeriesClassification",
    "SeriesError",
    "SeriesFiles",
    "SeriesSummary",
    "SeriesVolume",
    "SkippedFile",
    "SliceSource",
    "StudyError",
    "StudyFiles",
    "StudyInputError",
    "StudySelection",
    "classify_series",
    "group_dicom_folder",
    "plane_from_orientation",
    "read_series",
    "read_volume",
    "select_series",
    "summarize_series",
]
