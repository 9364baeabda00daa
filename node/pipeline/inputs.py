"""Choose a study's sagittal series and read them as volumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from analysis.volume import Sequence, Volume
from node.study import (
    SeriesChoice,
    SeriesError,
    StudyFiles,
    StudySelection,
    read_volume,
    select_series,
)
from node.study.select import MISSING_CONSEQUENCE


class PipelineError(Exception):
    """Root error of the analysis pipeline boundary."""


class NotAnalysable(PipelineError):
    """The study has no usable sagittal MR series; the message says why.

    ``unusable`` maps the UID of each chosen series that could not be read to why.
    """

    def __init__(self, message: str, unusable: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.unusable: Mapping[str, str] = dict(unusable or {})


@dataclass(frozen=True, eq=False)
class StudyInputs:
    """The volumes an analysis runs on, and where they came from."""

    study_instance_uid: str
    selection: StudySelection
    volumes: Mapping[Sequence, Volume]
    series_uids: Mapping[Sequence, str]
    # Series UID -> why the analysis could not use that chosen series (said in the impression too).
    unusable: Mapping[str, str] = field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        return (*self.selection.notes, *self.unusable.values())


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
    unusable: dict[str, str] = {}
    for choice in selection.choices:
        files = by_uid[choice.series.series_instance_uid]
        try:
            volumes[choice.sequence] = read_volume(files.paths, headers=files.headers)
        except SeriesError as exc:
            unusable[files.series_instance_uid] = _unusable(choice, exc)
            continue
        series_uids[choice.sequence] = files.series_instance_uid
    if not volumes:
        raise NotAnalysable("; ".join(unusable.values()) or "no sagittal series could be read", unusable)
    return StudyInputs(study.study_instance_uid, selection, volumes, series_uids, unusable)


def _unusable(choice: SeriesChoice, error: SeriesError) -> str:
    consequence = MISSING_CONSEQUENCE.get(choice.sequence)
    return (f"sagittal {choice.sequence} {choice.series.label} could not be used: {error}"
            + (f" ({consequence})" if consequence else ""))
