"""Choose a study's sagittal series and read them as volumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from analysis.volume import Sequence, Volume
from node.study import (
    SeriesError,
    SeriesFiles,
    StudyFiles,
    StudySelection,
    read_volume,
    select_series,
)
from node.study.frames import read_header


class PipelineError(Exception):
    """Root error of the analysis pipeline boundary."""


class NotAnalysable(PipelineError):
    """The study has no usable sagittal MR series; the message says why."""


@dataclass(frozen=True, eq=False)
class StudyInputs:
    """The volumes an analysis runs on, and where they came from."""

    study_instance_uid: str
    selection: StudySelection
    volumes: Mapping[Sequence, Volume]
    series_uids: Mapping[Sequence, str]

    @property
    def notes(self) -> tuple[str, ...]:
        return self.selection.notes


def study_files_from_paths(study_instance_uid: str, paths_by_series: Mapping[str, list[Path]]) -> StudyFiles:
    """Group stored files (as the node's database lists them) the way a folder scan would."""
    series: list[SeriesFiles] = []
    for series_uid, paths in sorted(paths_by_series.items()):
        ordered = tuple(sorted(paths))
        headers: tuple[Dataset, ...] = tuple(read_header(p) for p in ordered)
        series.append(SeriesFiles(study_instance_uid, series_uid, ordered, headers))
    return StudyFiles(study_instance_uid, tuple(series))


def load_inputs(study: StudyFiles) -> StudyInputs:
    """Select the best sagittal T1, T2, STIR and post-contrast T1 and read each as a volume.

    Raises :class:`NotAnalysable` when no usable sagittal series is left.
    """
    selection = select_series([s.headers for s in study.series])
    if not selection.analysable:
        raise NotAnalysable("; ".join(selection.problems))
    by_uid = {s.series_instance_uid: s for s in study.series}
    volumes: dict[Sequence, Volume] = {}
    series_uids: dict[Sequence, str] = {}
    problems: list[str] = []
    for choice in selection.choices:
        files = by_uid[choice.series.series_instance_uid]
        try:
            volumes[choice.sequence] = read_volume(files.paths, headers=files.headers)
        except SeriesError as exc:
            problems.append(f"{choice.series.label}: {exc}")
            continue
        series_uids[choice.sequence] = files.series_instance_uid
    if not volumes:
        raise NotAnalysable("; ".join(problems) or "no sagittal series could be read")
    return StudyInputs(study.study_instance_uid, selection, volumes, series_uids)
