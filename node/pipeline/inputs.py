"""Choose a study's sagittal series and read them as volumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from analysis.volume import Sequence, Volume
from node.study import (
    SeriesError,
    StudyFiles,
    StudySelection,
    read_volume,
    select_series,
)


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
