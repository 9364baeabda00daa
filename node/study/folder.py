"""Find the DICOM files under a folder and group them by study and series."""

from __future__ import annotations

import filecmp
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from node.study.errors import SeriesError
from node.study.frames import read_header

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass(frozen=True, eq=False)
class SeriesFiles:
    """The files of one series and their headers (read without pixel data), in path order."""

    study_instance_uid: str
    series_instance_uid: str
    paths: tuple[Path, ...]
    headers: tuple[Dataset, ...]


@dataclass(frozen=True, eq=False)
class StudyFiles:
    study_instance_uid: str
    series: tuple[SeriesFiles, ...]


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str
    # The study may be analysed without images it should have had (another version of an
    # instance, a folder that could not be read): always shown, not summed up among the rest.
    notable: bool = False


@dataclass(frozen=True, eq=False)
class DicomFolder:
    """Every study found under a folder, and the files that were not DICOM instances."""

    root: Path
    studies: tuple[StudyFiles, ...]
    skipped: tuple[SkippedFile, ...]

    def study(self, study_instance_uid: str) -> StudyFiles:
        for study in self.studies:
            if study.study_instance_uid == study_instance_uid:
                return study
        raise KeyError(study_instance_uid)


def _files_under(root: Path, skipped: list[SkippedFile], exclude: Path | None) -> list[Path]:
    """Every file under ``root``, in path order, through linked folders too (each folder once).

    ``Path.rglob`` neither follows a linked folder nor says when it cannot open
    one: a series there was left out without a word, and the study analysed
    without it. A folder that cannot be read and a broken link are listed as skipped.
    Folder ``exclude`` is not read, and listed as skipped when it lies under ``root``.
    """
    files: list[Path] = []
    visited: set[str] = set()
    excluded = os.path.realpath(exclude) if exclude is not None else None

    def unreadable(error: OSError) -> None:
        skipped.append(SkippedFile(Path(error.filename or root), f"folder cannot be read: {error.strerror}",
                                   notable=True))

    for folder, folders, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a folder linked twice, or a link loop
            folders.clear()
            continue
        visited.add(real)
        if real == excluded:
            skipped.append(SkippedFile(Path(folder), "the results folder (--out): not read as input"))
            folders.clear()
            continue
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                files.append(path)
            elif not path.exists():
                skipped.append(SkippedFile(path, "a link to nothing", notable=True))
    return sorted(files)


def group_dicom_folder(folder: str | os.PathLike[str], *, exclude: Path | None = None) -> DicomFolder:
    """Read the header of every file under ``folder`` (recursively) and group by Study/Series UID.

    ``exclude``: a folder not to read (the results folder, whose SR, SEG and key
    image would otherwise be read back as series of the study).

    Files that are not DICOM, DICOMDIR media directories, instances without
    Study or Series Instance UID and further files of an instance already read
    (same SOP Instance UID: a folder copied into itself, an export made twice)
    are listed in ``skipped`` with the reason. A second copy read as a second
    frame would put two frames at one position and cost the series its volume.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a directory")
    if exclude is not None and Path(os.path.realpath(root)).is_relative_to(os.path.realpath(exclude)):
        exclude = None  # results written beside the images: the images are still the input
    groups: dict[str, dict[str, list[tuple[Path, Dataset]]]] = defaultdict(lambda: defaultdict(list))
    skipped: list[SkippedFile] = []
    first_of: dict[str, Path] = {}
    for path in _files_under(root, skipped, exclude):
        try:
            ds = read_header(path)
        except SeriesError as exc:
            skipped.append(SkippedFile(path, str(exc)))
            continue
        meta = getattr(ds, "file_meta", None)
        sop_class = str(ds.get("SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", ""))
        if sop_class == MEDIA_DIRECTORY:
            skipped.append(SkippedFile(path, "DICOMDIR media directory"))
            continue
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not study_uid or not series_uid:
            skipped.append(SkippedFile(path, "no Study or Series Instance UID"))
            continue
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_uid and sop_uid in first_of:
            first = first_of[sop_uid]
            reason = f"SOP Instance UID {sop_uid} already read from {first}"
            other = not filecmp.cmp(first, path, shallow=False)
            if other:
                # a corrected re-export beside the original: a folder has no arrival order to
                # tell which is current (the node keeps the last one received)
                reason += (", which has other content; the folder does not say which one is current, "
                           f"so {first.name} (the first in path order) was used")
            skipped.append(SkippedFile(path, reason, notable=other))
            continue
        if sop_uid:
            first_of[sop_uid] = path
        groups[study_uid][series_uid].append((path, ds))
    studies = tuple(
        StudyFiles(
            study_uid,
            tuple(
                SeriesFiles(
                    study_uid,
                    series_uid,
                    tuple(p for p, _ in members),
                    tuple(ds for _, ds in members),
                )
                for series_uid, members in sorted(series.items())
            ),
        )
        for study_uid, series in sorted(groups.items())
    )
    return DicomFolder(root, studies, tuple(skipped))
