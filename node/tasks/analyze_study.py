"""The ``analyze_study`` job: classify the study's series, analyse it, record the result.

Every series gets its plane and MR contrast from its acquisition parameters
(:func:`node.study.classify_series`). A study with a usable sagittal MR
series is analysed (:mod:`node.pipeline`): its results are written under the
results folder and recorded as an ``AnalysisResult`` (outcome ``analysed``,
the findings as JSON), superseding earlier ones. A study without one is
marked ``skipped`` with an ``AnalysisResult`` saying why. A chosen series the
analysis could not read is recorded in ``series.unusable_reason`` and said
in the impression.

The job reads the study's content generation (``studies.content_version``)
with its file list, and its result becomes the study's answer only if the
generation is still the same when it is recorded. If newer content arrived
meanwhile, the result is not recorded (its files stay under its job id):
that content made the study ``receiving`` again, so the study completes
again and a later analysis, which sees it, records the answer. An older
job's result therefore never replaces a newer one, and once a study is quiet
its current result covers every current instance stored.

Files are read outside any database transaction: on SQLite every
transaction holds the write lock, which would stall the receiver.
The handler is idempotent, since a job can run again after a lost lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from analysis import ALGORITHM_VERSION
from analysis.vertebrae.model import BodyModel
from analysis.volume import Plane
from node.db.audit import StudyEvent, StudyStage
from node.db.models import AnalysisResult, Instance, Job, JobStatus, Series, Study, StudyStatus, utcnow
from node.delivery import current_result_id, last_reported_objects, publish_results
from node.pipeline.inputs import NotAnalysable, load_inputs
from node.pipeline.run import AnalysisOutput, analyse, write_results
from node.privacy import identifying_values
from node.queue.completion import ANALYZE_STUDY
from node.queue.jobs import ClaimedJob, JobCancelled, PermanentJobError
from node.queue.worker import JobContext
from node.results import ResultKind, ResultObject
from node.results.source import SeriesNotReferable
from node.results.writer import write_result_objects
from node.settings import DeliverySettings
from node.storage.retention import deleted_by_retention
from node.study import SeriesFiles, StudyError, StudyFiles, classify_series

log = logging.getLogger(__name__)

MR_MODALITY = "MR"
NO_SAGITTAL = "no sagittal MR series"


@dataclass(frozen=True)
class StoredSeries:
    """A series' database id, UID and files, as the catalogue lists them."""

    id: int
    uid: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class StudyListing:
    """The study's current files and the content generation they belong to."""

    content_version: int
    series: tuple[StoredSeries, ...]


@dataclass(frozen=True)
class Withheld:
    """Why the study's new content is not analysed, and the content generation that is."""

    content_version: int
    reason: str


@dataclass(frozen=True)
class Analysed:
    """An analysis's output and the result objects written for it."""

    output: AnalysisOutput
    objects: tuple[ResultObject, ...]


@dataclass(frozen=True)
class Earlier:
    """What a job needs to know of the study's past: the SRs it replaces and when the job was queued."""

    reports: tuple[ResultObject, ...]
    queued: datetime  # exactly, as the database holds it

    @property
    def created(self) -> datetime:
        """The content time the result objects carry (DICOM time: whole seconds, naive UTC)."""
        return self.queued.astimezone(UTC).replace(tzinfo=None, microsecond=0)

    def analysis_key(self, job_id: int) -> str:
        """What every UID of the job's results derives from.

        The same job run again (a lost lease) writes the same objects; the time it was
        queued tells apart the jobs of another database with the same id (one set up
        again, a second node), whose objects must not reuse UIDs the PACS has already.
        """
        return f"job {job_id} queued {self.queued.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class SeriesOutcome:
    id: int
    uid: str
    plane: str | None
    sequence: str
    reason: str


class AnalyzeStudy:
    """Handler for ``analyze_study`` jobs.

    Files are read under ``storage_root``; results (findings, label map and
    the DICOM result objects) are written under ``results_root``; ``model``
    gives the vertebral-body model (loaded once, on first use, so that
    starting a worker stays fast); ``delivery`` says where a current result's
    objects are sent (:func:`node.delivery.publish_results`).
    """

    def __init__(self, storage_root: Path, results_root: Path, model: Callable[[], BodyModel],
                 delivery: DeliverySettings) -> None:
        self._root = storage_root.resolve()
        self._results = results_root.resolve()
        self._model = model
        self._delivery = delivery

    def __call__(self, job: ClaimedJob, context: JobContext) -> None:
        if job.study_id is None:
            raise PermanentJobError(f"job {job.id} names no study")
        with context.sessions.begin() as session:
            # The SRs it replaces are read first: should another run of this job record between
            # the two reads, the check below sees it; after both, this run writes what that run
            # wrote (same predecessors, same UIDs and bytes) and records nothing.
            earlier = self._earlier(session, job)
            if session.scalar(select(AnalysisResult.id).where(AnalysisResult.job_id == job.id).limit(1)):
                # Run again after its worker died past the commit (a lost lease): its result is
                # recorded and its objects may be out for delivery; writing them again would
                # change them under their recorded hashes.
                log.info("job %d already recorded its result for study %s; nothing to do",
                         job.id, job.study_uid)
                return
            listing = self._series_files(session, job.study_id)
            if isinstance(listing, Withheld):
                withhold(session, job, listing)
                return
        if listing is None:
            log.info("study %s is receiving again; the next analysis will cover it", job.study_uid)
            return
        outcomes: list[SeriesOutcome] = []
        readable: list[SeriesFiles] = []
        for series in listing.series:
            if context.cancelled.is_set():
                raise JobCancelled(f"job {job.id} cancelled while reading study {job.study_uid}")
            outcome, headers = self._classify(series)
            for header in headers or ():
                context.keep_private(identifying_values(header))
            outcomes.append(outcome)
            if headers is not None:
                readable.append(SeriesFiles(job.study_uid or "", series.uid, series.paths, headers))
        analysis: Analysed | str | None = None
        unusable: Mapping[str, str] = {}
        if any(o.plane == Plane.SAGITTAL for o in outcomes):
            analysis, unusable = self._analyse(job, StudyFiles(job.study_uid or "", tuple(readable)), earlier,
                                               context.cancelled)
        with context.sessions.begin() as session:
            self._record(session, job, listing.content_version, outcomes, analysis, unusable)

    def _analyse(self, job: ClaimedJob, files: StudyFiles, earlier: Earlier,
                 cancelled: threading.Event) -> tuple[Analysed | str, Mapping[str, str]]:
        """The analysis output and its result objects (or why the study cannot be analysed),
        and the series it could not use."""
        try:
            inputs = load_inputs(files)
        except NotAnalysable as exc:
            return str(exc), exc.unusable

        def stop_if_cancelled(step: str) -> None:
            # between the analysis's steps, and before anything is written: a released
            # job leaves no results behind for the worker that runs it again
            if cancelled.is_set():
                raise JobCancelled(f"job {job.id} cancelled while analysing study {job.study_uid} ({step})")

        output = analyse(inputs, self._model(), progress=stop_if_cancelled)
        stop_if_cancelled("before writing its results")
        out_dir = self._results / files.study_instance_uid / str(job.id)
        write_results(out_dir, output)
        # keyed by the job and dated by its queueing, so a job run again after a lost
        # lease, before it recorded them, writes the same objects (same UIDs, same bytes)
        try:
            objects = write_result_objects(output, inputs, files, out_dir,
                                           analysis_key=earlier.analysis_key(job.id), created=earlier.created,
                                           predecessors=earlier.reports)
        except SeriesNotReferable as exc:  # the same series at every attempt: a retry cannot help
            raise PermanentJobError(str(exc)) from exc
        return Analysed(output, objects), inputs.unusable

    def _earlier(self, session: Session, job: ClaimedJob) -> Earlier:
        assert job.study_id is not None
        reports = tuple(obj for obj in last_reported_objects(session, job.study_id, self._results)
                        if obj.kind == ResultKind.SR)
        queued = session.scalar(select(Job.created_at).where(Job.id == job.id))
        if queued is None:
            raise PermanentJobError(f"job {job.id} does not exist")
        return Earlier(reports, queued)

    def _series_files(self, session: Session, study_id: int) -> StudyListing | Withheld | None:
        study = session.get(Study, study_id)
        if study is None:
            raise PermanentJobError(f"study {study_id} does not exist")
        if study.status == StudyStatus.RECEIVING:
            return None
        # The generation is read before the files: on PostgreSQL each statement has its
        # own snapshot, so the list may hold newer instances, never fewer (a newer
        # generation then makes the result stale, and the study is analysed again).
        content_version = study.content_version
        rows = session.execute(
            select(Series.id, Series.series_instance_uid, Instance.path,
                   deleted_by_retention(Series.study_id, Instance.received_at))
            .join(Instance, Instance.series_id == Series.id)
            .where(Series.study_id == study_id, Instance.is_current.is_(True))
            .order_by(Series.id, Instance.id)
        ).all()
        # Images retention deleted are gone for good (a missing file otherwise means storage
        # catching up, and the job retries); a study sent again whole is analysed again.
        kept = [(series_id, uid, path) for series_id, uid, path, deleted in rows if not deleted]
        if rows and not kept:
            raise PermanentJobError(f"the images of study {study.study_instance_uid} were deleted by "
                                    "retention: send the study again to analyse it")
        if len(kept) < len(rows) and current_result_id(session, study_id) is not None:
            # What was sent since (a late series, part of the study) is not the study: an
            # analysis of it would replace the answer of the whole study with a lesser one.
            return Withheld(content_version, (
                f"{len(rows) - len(kept)} of {len(rows)} images of the study were deleted by retention "
                f"and not sent again: its result stays that of the whole study; send the whole study "
                f"again to analyse it with the {len(kept)} received since"))
        grouped: dict[tuple[int, str], list[Path]] = {}
        for series_id, uid, path in kept:
            grouped.setdefault((series_id, uid), []).append(self._path(path))
        series = tuple(StoredSeries(sid, uid, tuple(paths)) for (sid, uid), paths in grouped.items())
        return StudyListing(content_version, series)

    def _path(self, relative: str) -> Path:
        path = (self._root / relative).resolve()
        if not path.is_relative_to(self._root):
            raise PermanentJobError(f"instance path {relative!r} leaves the storage root")
        return path

    def _classify(self, series: StoredSeries) -> tuple[SeriesOutcome, tuple[Dataset, ...] | None]:
        """Plane and contrast of a series, and its headers (None when a file is unreadable)."""
        headers: list[Dataset] = []
        for path in series.paths:
            try:
                headers.append(dcmread(path, stop_before_pixels=True))
            except InvalidDicomError as exc:
                return SeriesOutcome(series.id, series.uid, None, "OTHER",
                                     f"{path.name}: not a readable DICOM file ({exc})"), None
            # A missing file (OSError) propagates: storage may be catching up, so retry.
        return classify_headers(series.id, series.uid, headers), tuple(headers)

    def _record(
        self,
        session: Session,
        job: ClaimedJob,
        content_version: int,
        outcomes: Seq[SeriesOutcome],
        analysis: Analysed | str | None,
        unusable: Mapping[str, str],
    ) -> None:
        if isinstance(analysis, Analysed):
            status, reason = StudyStatus.ANALYSED, None
        elif isinstance(analysis, str):
            status, reason = StudyStatus.SKIPPED, analysis
        else:
            status, reason = StudyStatus.SKIPPED, NO_SAGITTAL if outcomes else "no series stored"
        if not finish_study(session, job, status, reason, content_version):
            _log_not_recorded(session, job, content_version)
            return
        for outcome in outcomes:
            problem = unusable.get(outcome.uid)
            session.execute(
                update(Series)
                .where(Series.id == outcome.id)
                .values(plane=outcome.plane, sequence=outcome.sequence,
                        classification_reason=outcome.reason[:4000],
                        unusable_reason=None if problem is None else problem[:4000])
                .execution_options(synchronize_session=False)
            )
        for problem in unusable.values():
            log.warning("study %s: %s", job.study_uid, problem)
        if isinstance(analysis, Analysed):
            findings = analysis.output.findings.to_json_dict()
            result = record_result(session, job, "analysed", None, findings, content_version=content_version)
            deliveries = publish_results(session, self._delivery, result.id, analysis.objects,
                                         results_root=self._results)
            log.info("study %s analysed: %d levels, %d suspicious; results in %s; %d delivery job(s) queued",
                     job.study_uid, len(findings["levels"]), findings["study"]["suspicious_level_count"],
                     self._results / (job.study_uid or "") / str(job.id), len(deliveries))
            return
        summary = [{"series_instance_uid": o.uid, "plane": o.plane, "sequence": o.sequence}
                   for o in outcomes]
        record_result(session, job, "skipped", reason, {"series": summary}, content_version=content_version)
        log.info("study %s skipped: %s", job.study_uid, reason)


def withhold(session: Session, job: ClaimedJob, withheld: Withheld) -> None:
    """Leave the study's current result as it is, and say why no new analysis was recorded."""
    if not finish_study(session, job, StudyStatus.ANALYSED, None, withheld.content_version):
        _log_not_recorded(session, job, withheld.content_version)
        return
    assert job.study_id is not None
    session.add(StudyEvent(study_id=job.study_id, at=utcnow(), stage=StudyStage.ANALYSIS_WITHHELD,
                           detail=withheld.reason))
    log.warning("study %s not analysed again: %s", job.study_uid, withheld.reason)


def finish_study(session: Session, job: ClaimedJob, status: StudyStatus, skip_reason: str | None,
                 content_version: int) -> bool:
    """Move the study from ``complete`` to ``status`` if its content is still generation ``content_version``.

    False when newer content arrived while the job ran (the analysis that
    follows covers it; this job's result would be stale), when the study was
    already answered for this content (a job run again after a lost lease), or
    when a newer analysis of the study waits or runs: `reanalyze` queues one
    once this job's lease has expired, and it is that analysis which was asked for.
    """
    # The study's row first: `reanalyze` queues its job under that lock. On PostgreSQL a
    # statement that waited for the lock would judge the jobs by its older snapshot; the
    # statement after the wait sees the new one.
    session.execute(select(Study.id).where(Study.id == job.study_id).with_for_update())
    return session.execute(
        update(Study)
        .where(Study.id == job.study_id, Study.status == StudyStatus.COMPLETE,
               Study.content_version == content_version, ~_newer_analysis(job).exists())
        .values(status=status, skip_reason=skip_reason)
        .returning(Study.id)
        .execution_options(synchronize_session=False)
    ).one_or_none() is not None


def _newer_analysis(job: ClaimedJob) -> Select[int]:
    """The study's analysis jobs queued after ``job`` that are still to answer."""
    return select(Job.id).where(Job.kind == ANALYZE_STUDY, Job.study_id == job.study_id, Job.id > job.id,
                                Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))


def _log_not_recorded(session: Session, job: ClaimedJob, content_version: int) -> None:
    status, newest = session.execute(
        select(Study.status, Study.content_version).where(Study.id == job.study_id)
    ).one()
    if newest != content_version:
        log.info("study %s received newer content (generation %d) while job %d analysed generation %d: "
                 "result not recorded; the study is analysed again", job.study_uid, newest, job.id,
                 content_version)
    elif (newer := session.scalar(_newer_analysis(job).limit(1))) is not None:
        log.warning("study %s: job %d is a newer analysis of it (requested after job %d's lease expired): "
                    "the result of job %d is not recorded", job.study_uid, newer, job.id, job.id)
    else:
        log.info("study %s is already %s for generation %d: result of job %d not recorded",
                 job.study_uid, status, content_version, job.id)


def classify_headers(series_id: int, series_uid: str, headers: Seq[Dataset]) -> SeriesOutcome:
    """Plane and contrast of one series from its headers, or why it has none."""
    modality = str(headers[0].get("Modality", "") or "") if headers else ""
    if modality != MR_MODALITY:
        return SeriesOutcome(series_id, series_uid, None, "OTHER", f"modality '{modality}', not MR")
    try:
        found = classify_series(headers)
    except (StudyError, ValueError) as exc:
        return SeriesOutcome(series_id, series_uid, None, "OTHER", f"cannot classify: {exc}")
    return SeriesOutcome(series_id, series_uid, found.plane.value, found.sequence.value, found.explanation)


def record_result(
    session: Session, job: ClaimedJob, outcome: str, reason: str | None, findings: dict[str, Any],
    *, content_version: int,
) -> AnalysisResult:
    """Add a study's new result, of content generation ``content_version``, and mark its earlier ones
    superseded by it. Only called once :func:`finish_study` found that generation still the newest."""
    assert job.study_id is not None
    result = AnalysisResult(study_id=job.study_id, job_id=job.id, outcome=outcome, reason=reason,
                            algorithm_version=ALGORITHM_VERSION, findings=findings,
                            content_version=content_version)
    session.add(result)
    session.flush()
    session.execute(
        update(AnalysisResult)
        .where(AnalysisResult.study_id == job.study_id, AnalysisResult.id != result.id,
               AnalysisResult.superseded_by_id.is_(None))
        .values(superseded_by_id=result.id)
        .execution_options(synchronize_session=False)
    )
    return result
