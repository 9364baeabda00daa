"""Pick, per study, the sagittal series the analysis uses, and say why (or why none)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from pydicom.dataset import Dataset

from analysis.volume import Plane, Sequence
from node.study.classify import SeriesClassification, classify_series, localizer_images
from node.study.errors import SeriesError, StudyInputError
from node.study.frames import (
    SUPPORTED_SOP_CLASSES,
    check_frame_of_reference,
    frame_headers,
    frame_of_reference,
    photometric_interpretation,
    without_localizers,
)
from node.study.geometry import GeometryTolerance, StackGeometry, stack_geometry

WANTED: tuple[Sequence, ...] = (Sequence.T1, Sequence.T2, Sequence.STIR, Sequence.T1C)
# Used for the analysis only when none of WANTED is there (a Dixon-only study).
FALLBACK: tuple[Sequence, ...] = (Sequence.DIXON,)
# What the analysis cannot assess without each sequence (shown with the study's results).
MISSING_CONSEQUENCE: Mapping[Sequence, str] = MappingProxyType({
    Sequence.T1: "no T1 marrow signal assessment",
    Sequence.T2: "no T2 signal assessment",
    Sequence.STIR: "no fat-suppressed (STIR) oedema/lesion assessment",
    Sequence.T1C: "no enhancement assessment",
})
COVERAGE_STEP_MM = 5.0  # coverages closer than this count as equal
# Series share a part of the spine when they overlap along it by this fraction of the shorter one.
SAME_STATION_OVERLAP = 0.5


@dataclass(frozen=True)
class SeriesSummary:
    """One series as the selection sees it, from its headers."""

    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    description: str
    modality: str
    classification: SeriesClassification | None  # None when it is not an MR image series
    slices: int
    slice_spacing: float | None  # mm between slice positions, when the series forms a volume
    # Lowest and highest patient z (LPS: head is +z) the volume reaches, when it forms one.
    spine_range: tuple[float, float] | None
    slice_thickness: float | None
    derived: bool
    acquired: str  # sortable acquisition date and time ("" when not recorded)
    volume_problem: str | None  # why it cannot form a volume; None when it can
    frame_of_reference_uid: str = ""  # "" when the series states none
    localizers_left_out: int = 0  # localizer images the series is read without

    @property
    def length_mm(self) -> float:
        """How much of the spine (head to foot) the series covers."""
        return self.spine_range[1] - self.spine_range[0] if self.spine_range else 0.0

    @property
    def width_mm(self) -> float:
        """How far the slices reach across the slice direction (left to right on a sagittal series)."""
        return self.slices * self.slice_spacing if self.slice_spacing else 0.0

    def shares_spine_with(self, other: SeriesSummary) -> bool:
        """Whether both cover mostly the same part of the spine (not two stations of a whole spine)."""
        if self.spine_range is None or other.spine_range is None:
            return False
        (low, high), (other_low, other_high) = self.spine_range, other.spine_range
        common = min(high, other_high) - max(low, other_low)
        return common >= SAME_STATION_OVERLAP * min(self.length_mm, other.length_mm)

    @property
    def label(self) -> str:
        number = "?" if self.series_number is None else str(self.series_number)
        return f"series {number} '{self.description}'"


@dataclass(frozen=True)
class SeriesChoice:
    sequence: Sequence
    series: SeriesSummary
    reason: str


@dataclass(frozen=True)
class StudySelection:
    """The series chosen per sequence; ``problems`` non-empty means the study cannot be analysed."""

    study_instance_uid: str
    choices: tuple[SeriesChoice, ...]
    series: tuple[SeriesSummary, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]  # limitations: sequences missing, series set aside

    @property
    def analysable(self) -> bool:
        return not self.problems

    def choice(self, sequence: Sequence) -> SeriesChoice | None:
        return next((c for c in self.choices if c.sequence is sequence), None)


def _acquired(ds: Dataset) -> str:
    if ds.get("AcquisitionDateTime"):
        return str(ds.AcquisitionDateTime)
    for date, time in (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"),
                       ("ContentDate", "ContentTime")):
        if ds.get(date) or ds.get(time):
            return f"{ds.get(date, '') or ''}{ds.get(time, '') or ''}"
    return ""


def _series_number(ds: Dataset) -> int | None:
    # Series Number is an IS; a sender's non-numeric value only costs the series its number.
    try:
        number = float(str(ds.get("SeriesNumber")))
    except ValueError:  # pydicom's conversion of the stored text, or ours
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _spine_range(geometry: StackGeometry) -> tuple[float, float]:
    """Lowest and highest patient z of the corners of the volume's grid."""
    direction = np.asarray(geometry.direction).reshape(3, 3)
    k, j, i = geometry.shape
    extent = np.array([(i - 1) * geometry.spacing[0], (j - 1) * geometry.spacing[1],
                       (k - 1) * geometry.spacing[2]])
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T * extent
    z = geometry.origin[2] + corners @ direction[2]
    return float(z.min()), float(z.max())


def summarize_series(headers: Seq[Dataset], tolerance: GeometryTolerance | None = None) -> SeriesSummary:
    """Classification and volume facts of one series from its headers (no pixel data read)."""
    if not headers:
        raise StudyInputError("headers: a series needs at least one header")
    # The series as its volume is read: without its localizers (see frames.series_frame_headers).
    kept = without_localizers(headers)
    first = kept[0][1]
    modality = str(first.get("Modality", "") or "")
    image_type = [str(v).upper() for v in (first.get("ImageType") or [])]
    frames, problem = [], None
    try:
        for n, ds, skip in kept:
            name = getattr(ds, "filename", None)
            frames.extend(frame_headers(Path(name) if isinstance(name, str) else Path(f"#{n}"), ds, skip))
        geometry = stack_geometry(frames, tolerance)
        # decided here, so a repeat of that contrast is used
        photometric_interpretation(ds for _, ds, _ in kept)
        check_frame_of_reference(ds for _, ds, _ in kept)
    except SeriesError as exc:
        geometry, problem = None, str(exc)
    thickness = next((f.slice_thickness for f in frames if f.slice_thickness), None)
    number = _series_number(first)
    mr_image = modality == "MR" and str(first.get("SOPClassUID", "")) in SUPPORTED_SOP_CLASSES
    classification = classify_series(headers) if mr_image else None
    return SeriesSummary(
        study_instance_uid=str(first.get("StudyInstanceUID", "") or ""),
        series_instance_uid=str(first.get("SeriesInstanceUID", "") or ""),
        series_number=number,
        description=str(first.get("SeriesDescription", "") or ""),
        modality=modality,
        classification=classification,
        slices=len(frames),
        slice_spacing=None if geometry is None else geometry.spacing[2],
        spine_range=None if geometry is None else _spine_range(geometry),
        slice_thickness=thickness,
        derived=bool(image_type) and image_type[0] == "DERIVED",
        acquired=_acquired(first),
        volume_problem=problem,
        frame_of_reference_uid=frame_of_reference(first),
        localizers_left_out=classification.localizers_left_out if classification else 0,
    )


_Criterion = tuple[str, Callable[[SeriesSummary], object]]
# In order of importance; the first that separates the best from the runner-up is the reason.
_CRITERIA: tuple[_Criterion, ...] = (
    ("original, not derived", lambda s: not s.derived),
    ("covers more of the spine", lambda s: round(s.length_mm / COVERAGE_STEP_MM)),
    ("covers more across it", lambda s: round(s.width_mm / COVERAGE_STEP_MM)),
    ("thinner slices", lambda s: -(s.slice_thickness or s.slice_spacing or 1e9)),
    ("more slices", lambda s: s.slices),
    ("latest of repeats", lambda s: (s.acquired, s.series_number or 0)),
)


def _sort_key(summary: SeriesSummary) -> tuple[object, ...]:
    return tuple(key(summary) for _, key in _CRITERIA)


def _rank(candidates: list[SeriesSummary]) -> tuple[SeriesSummary, str]:
    ordered = sorted(candidates, key=_sort_key, reverse=True)
    best = ordered[0]
    facts = (
        f"{best.slices} slices, {best.length_mm:.0f} mm of spine, {best.width_mm:.0f} mm across, "
        f"{best.slice_thickness or best.slice_spacing:g} mm slices"
    )
    if len(ordered) == 1:
        return best, f"only candidate: {best.label} ({facts})"
    runner_up = ordered[1]
    why = next((name for name, key in _CRITERIA if key(best) != key(runner_up)), "first of equals")
    return best, f"{best.label} over {runner_up.label}: {why} ({facts})"


def select_series(
    series_headers: Iterable[Seq[Dataset]], tolerance: GeometryTolerance | None = None
) -> StudySelection:
    """Choose the sagittal T1, T2, STIR and post-contrast T1 of one study.

    ``series_headers`` holds one sequence of headers per series. A study with
    no usable sagittal series of those four contrasts cannot be analysed;
    ``problems`` then says why.
    """
    summaries = tuple(summarize_series(h, tolerance) for h in series_headers)
    studies = {s.study_instance_uid for s in summaries}
    if len(studies) > 1:
        raise StudyInputError(f"series_headers: series of {len(studies)} studies given, expected one")
    study_uid = next(iter(studies), "")
    problems: list[str] = []
    notes: list[str] = []
    mr = [s for s in summaries if s.classification is not None]
    sagittal = [s for s in mr if s.classification and s.classification.plane is Plane.SAGITTAL]
    # the administrator's first question: why was a series that is there not usable
    set_aside = [f"{s.label} set aside: {s.classification.explanation}" for s in _mixed_sagittal(mr)
                 if s.classification]
    notes += set_aside
    if not summaries:
        problems.append("the study has no series")
    elif not mr:
        kinds = ", ".join(sorted({s.modality or "unknown" for s in summaries}))
        problems.append(f"no MR image series (modalities: {kinds})")
    elif not sagittal:
        planes = ", ".join(sorted({str(s.classification.plane) for s in mr if s.classification}))
        problems.append(f"no sagittal MR series (planes found: {planes})"
                        + "".join(f"; {reason}" for reason in set_aside))
    usable: dict[Sequence, list[SeriesSummary]] = {}
    for sequence in WANTED:
        of_kind = _of_sequence(sagittal, sequence)
        aside = [f"{s.label} ({sequence}) set aside: {s.volume_problem}" for s in of_kind if s.volume_problem]
        set_aside += aside
        notes += aside
        usable[sequence] = [s for s in of_kind if s.volume_problem is None]
    fallback = not any(usable.values())
    if fallback:
        notes += [f"no usable sagittal {sequence}: {MISSING_CONSEQUENCE[sequence]}" for sequence in WANTED
                  if sagittal]
        usable = {sequence: [s for s in _of_sequence(sagittal, sequence) if s.volume_problem is None]
                  for sequence in FALLBACK}
    usable, other_frame = _one_frame_of_reference(usable)
    other_frame_at = len(notes)  # said once the series analysed are known
    anchor = _anchor([s for found in usable.values() for s in found])
    choices: list[SeriesChoice] = []
    for sequence, found in usable.items():
        # Overlap is not transitive (a long series overlaps a thoracic and a lumbar one that do
        # not overlap each other): each series chosen overlaps every one chosen before it too.
        same = [s for s in found if anchor is not None and s.shares_spine_with(anchor)
                and all(s.shares_spine_with(c.series) for c in choices)]
        if anchor is not None:
            notes += [f"{s.label} ({sequence}) set aside: {_elsewhere(s, _apart(s, anchor, choices))}"
                      for s in found if s not in same]
        if same:
            best, reason = _rank(same)
            choices.append(SeriesChoice(sequence, best, f"only sagittal series left: {reason}" if fallback
                                        else reason))
        elif sagittal and not fallback:
            notes.append(f"no usable sagittal {sequence}: {MISSING_CONSEQUENCE[sequence]}")
    if choices:
        notes[other_frame_at:other_frame_at] = [
            f"{s.label} ({sequence}) set aside: {_other_frame(s, choices[0].series)}"
            for sequence, s in other_frame
        ]
    notes += [f"{c.series.label}: {localizer_images(c.series.localizers_left_out)} left out"
              for c in choices if c.series.localizers_left_out]
    if len(choices) > 1 and not choices[0].series.frame_of_reference_uid:
        notes.append("the series analysed state no Frame of Reference UID: their positions are "
                     "taken to be in one frame")
    if sagittal and not choices:
        kinds = ", ".join(sorted({str(s.classification.sequence) for s in sagittal if s.classification}))
        why = "".join(f"; {reason}" for reason in set_aside)
        problems.append(
            "no usable sagittal T1, T2, STIR, post-contrast T1 or Dixon series "
            f"(sagittal series: {kinds}){why}"
        )
    return StudySelection(study_uid, tuple(choices), summaries, tuple(problems), tuple(notes))


def _of_sequence(series: Iterable[SeriesSummary], sequence: Sequence) -> list[SeriesSummary]:
    return [s for s in series if s.classification and s.classification.sequence is sequence]


def _mixed_sagittal(series: Iterable[SeriesSummary]) -> list[SeriesSummary]:
    """Series with sagittal frames of a wanted contrast that are, as a whole, not a sagittal one of
    those contrasts (frames in several planes, or mixing contrasts): they are there, yet not used."""
    wanted = frozenset(WANTED)
    return [s for s in series if s.classification
            and Plane.SAGITTAL in s.classification.planes_found and wanted & s.classification.sequences_found
            and not (s.classification.plane is Plane.SAGITTAL and s.classification.sequence in wanted)]


def _one_frame_of_reference(
    usable: Mapping[Sequence, list[SeriesSummary]],
) -> tuple[dict[Sequence, list[SeriesSummary]], list[tuple[Sequence, SeriesSummary]]]:
    """The candidates in the frame of reference analysed, and those set aside as in another.

    Positions in different frames of reference cannot be compared (PS3.3 C.7.4.1): a
    series of another frame, resampled by its positions, shows other tissue at each level.
    The frame analysed is the one whose series share one part of the spine in the most
    sequences; then one stated over none; then the one with a T1 (T2, STIR, post-contrast
    T1: the order of WANTED); then the latest acquired (a repeat after the patient moved).
    Series that state no Frame of Reference UID count as one frame, as the files of one
    series do (frames.check_frame_of_reference): a study whose every series lacks it is
    analysed as before, with a note.
    """
    candidates = [s for found in usable.values() for s in found]
    frames = sorted({s.frame_of_reference_uid for s in candidates})
    if len(frames) < 2:
        return dict(usable), []

    def key(uid: str) -> tuple[object, ...]:
        members = [s for s in candidates if s.frame_of_reference_uid == uid]
        anchor = _anchor(members)
        together = {s.classification.sequence for s in members
                    if s.classification and anchor is not None and s.shares_spine_with(anchor)}
        return (len(together), bool(uid), tuple(seq in together for seq in WANTED),
                max(s.acquired for s in members))

    analysed = max(frames, key=key)
    elsewhere = [(sequence, s) for sequence, found in usable.items() for s in found
                 if s.frame_of_reference_uid != analysed]
    return ({sequence: [s for s in found if s.frame_of_reference_uid == analysed]
             for sequence, found in usable.items()}, elsewhere)


def _other_frame(series: SeriesSummary, analysed: SeriesSummary) -> str:
    if not series.frame_of_reference_uid:
        return (f"no Frame of Reference UID, so its positions cannot be matched to those of the series "
                f"analysed, {analysed.label}")
    return (f"another Frame of Reference than the series analysed, {analysed.label}, so its positions "
            "cannot be matched to theirs")


def _anchor(candidates: Seq[SeriesSummary]) -> SeriesSummary | None:
    """The series whose part of the spine is analysed: the one sharing it with the most sequences.

    A whole-spine study sends its stations as separate series; the analysis
    reads one part of the spine, and among parts that tie the lowest (the
    lumbar one) wins.
    """
    def key(candidate: SeriesSummary) -> tuple[int, float]:
        sequences = {s.classification.sequence for s in candidates
                     if s.classification and s.shares_spine_with(candidate)}
        return len(sequences), -_middle(candidate)
    best = max(candidates, key=key, default=None)
    # A long series (the whole spine) shares its part with a thoracic and a lumbar one alike:
    # the lowest series of its part says which part is analysed.
    return None if best is None else min((s for s in candidates if s.shares_spine_with(best)), key=_middle)


def _middle(series: SeriesSummary) -> float:
    low, high = series.spine_range or (0.0, 0.0)
    return (low + high) / 2


def _apart(series: SeriesSummary, anchor: SeriesSummary, choices: Seq[SeriesChoice]) -> SeriesSummary:
    """The series analysed that ``series`` does not share its part of the spine with."""
    if not series.shares_spine_with(anchor):
        return anchor
    return next(c.series for c in choices if not series.shares_spine_with(c.series))


def _elsewhere(series: SeriesSummary, analysed: SeriesSummary) -> str:
    def span(s: SeriesSummary) -> str:
        low, high = s.spine_range or (0.0, 0.0)
        return f"z {low:.0f} to {high:.0f} mm"
    return (f"covers another part of the spine ({span(series)}) than the series analysed, "
            f"{analysed.label} ({span(analysed)})")
