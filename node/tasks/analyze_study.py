"""The ``analyze_study`` job: classify the study's series, analyse it, record the result.

Every series gets its plane and MR contrast from its acquisition parameters
(:func:`node.study.classify_series`). A study with a usable sagittal MR
series is analysed (:mod:`node.pipeline`): its results are written under the
results folder and recorded as an ``AnalysisResult`` (outcome ``analysed``,
the findings as JSON), superseding earlier ones. A study without one is
marked ``skipped`` with an ``AnalysisResult`` saying why.

Files are read outside any database transaction: on SQLite every
transaction holds the write lock, which would stall the receiver.
The handler is idempotent, since a job can run again after a lost lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from analysis import ALGORITHM_VERSION
from analysis.vertebrae.model import BodyModel
from analysis.volume import Plane
from node.db.models import AnalysisResult, Instance, Job, Series, Study, StudyStatus
from node.delivery import current_result_objects, publish_results
from node.pipeline.inputs import NotAnalysable, load_inputs
from node.pipeline.run import AnalysisOutput, analyse, write_results
from node.queue.jobs import ClaimedJob, JobCancelled, PermanentJobError
from node.queue.worker import JobContext
from node.results import ResultKind, ResultObject
from node.results.writer import write_result_objects
from node.settings import DeliverySettings
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
class Analysed:
    """An analysis's output and the result objects written for it."""

    output: AnalysisOutput
    objects: tuple[ResultObject, ...]


@dataclass(frozen=True)
class Earlier:
    """What a job needs to know of the study's past: the SRs it replaces and when the job was queued."""

    reports: tuple[ResultObject, ...]
    created: datetime


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
            listing = self._series_files(session, job.study_id)
            earlier = self._earlier(session, job)
        if listing is None:
            log.info("study %s is receiving again; the next analysis will cover it", job.study_uid)
            return
        outcomes: list[SeriesOutcome] = []
        readable: list[SeriesFiles] = []
        for series in listing:
            if context.cancelled.is_set():
                raise JobCancelled(f"job {job.id} cancelled while reading study {job.study_uid}")
            outcome, headers = self._classify(series)
            outcomes.append(outcome)
            if headers is not None:
                readable.append(SeriesFiles(job.study_uid or "", series.uid, series.paths, headers))
        analysis: Analysed | str | None = None
        if any(o.plane == Plane.SAGITTAL for o in outcomes):
            analysis = self._analyse(job, StudyFiles(job.study_uid or "", tuple(readable)), earlier)
            if context.cancelled.is_set():
                raise JobCancelled(f"job {job.id} cancelled while analysing study {job.study_uid}")
        with context.sessions.begin() as session:
            self._record(session, job, outcomes, analysis)

    def _analyse(self, job: ClaimedJob, files: StudyFiles, earlier: Earlier) -> Analysed | str:
        """The analysis output and its result objects, or why the study cannot be analysed."""
        try:
            inputs = load_inputs(files)
        except NotAnalysable as exc:
            return str(exc)
        output = analyse(inputs, self._model())
        out_dir = self._results / files.study_instance_uid / str(job.id)
        write_results(out_dir, output)
        # keyed by the job and dated by its queueing, so a job run again after a lost
        # lease writes the same objects (same UIDs, same bytes)
        objects = write_result_objects(output, inputs, files, out_dir, analysis_key=f"job {job.id}",
                                       created=earlier.created, predecessors=earlier.reports)
        return Analysed(output, objects)

    def _earlier(self, session: Session, job: ClaimedJob) -> Earlier:
        assert job.study_id is not None
        reports = tuple(obj for obj in current_result_objects(session, job.study_id, self._results)
                        if obj.kind == ResultKind.SR)
        queued = session.scalar(select(Job.created_at).where(Job.id == job.id))
        if queued is None:
            raise PermanentJobError(f"job {job.id} does not exist")
        return Earlier(reports, queued.astimezone(UTC).replace(tzinfo=None, microsecond=0))

    def _series_files(self, session: Session, study_id: int) -> list[StoredSeries] | None:
        study = session.get(Study, study_id)
        if study is None:
            raise PermanentJobError(f"study {study_id} does not exist")
        if study.status == StudyStatus.RECEIVING:
            return None
        rows = session.execute(
            select(Series.id, Series.series_instance_uid, Instance.path)
            .join(Instance, Instance.series_id == Series.id)
            .where(Series.study_id == study_id)
            .order_by(Series.id, Instance.id)
        ).all()
        grouped: dict[tuple[int, str], list[Path]] = {}
        for series_id, uid, path in rows:
            grouped.setdefault((series_id, uid), []).append(self._path(path))
        return [StoredSeries(sid, uid, tuple(paths)) for (sid, uid), paths in grouped.items()]

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
        outcomes: Seq[SeriesOutcome],
        analysis: Analysed | str | None,
    ) -> None:
        for outcome in outcomes:
            session.execute(
                update(Series)
                .where(Series.id == outcome.id)
                .values(plane=outcome.plane, sequence=outcome.sequence,
                        classification_reason=outcome.reason[:4000])
                .execution_options(synchronize_session=False)
            )
        summary = [{"series_instance_uid": o.uid, "plane": o.plane, "sequence": o.sequence}
                   for o in outcomes]
        if isinstance(analysis, Analysed):
            if not finish_study(session, job, StudyStatus.ANALYSED, None):
                log.info("study %s changed while it was analysed; result not recorded", job.study_uid)
                return
            findings = analysis.output.findings.to_json_dict()
            result = record_result(session, job, "analysed", None, findings)
            deliveries = publish_results(session, self._delivery, result.id, analysis.objects,
                                         results_root=self._results)
            if deliveries:
                log.info("study %s: %d delivery job(s) queued", job.study_uid, len(deliveries))
            log.info("study %s analysed: %d levels, %d suspicious; results in %s", job.study_uid,
                     len(findings["levels"]), findings["study"]["suspicious_level_count"],
                     self._results / (job.study_uid or "") / str(job.id))
            return
        if isinstance(analysis, str):
            reason = analysis
        elif outcomes:
            reason = NO_SAGITTAL
        else:
            reason = "no series stored"
        if not finish_study(session, job, StudyStatus.SKIPPED, reason):
            log.info("study %s changed while it was classified; not marked skipped", job.study_uid)
            return
        record_result(session, job, "skipped", reason, {"series": summary})
        log.info("study %s skipped: %s", job.study_uid, reason)


def finish_study(session: Session, job: ClaimedJob, status: StudyStatus, skip_reason: str | None) -> bool:
    """Move the study from ``complete`` to ``status``; False when it is no longer complete.

    A study receiving again (a late instance) is left alone: the analysis that
    follows its next quiet period covers it, and this job's result would be stale.
    """
    return session.execute(
        update(Study)
        .where(Study.id == job.study_id, Study.status == StudyStatus.COMPLETE)
        .values(status=status, skip_reason=skip_reason)
        .returning(Study.id)
        .execution_options(synchronize_session=False)
    ).one_or_none() is not None


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
    session: Session, job: ClaimedJob, outcome: str, reason: str | None, findings: dict[str, Any]
) -> AnalysisResult:
    """Add a study's new result and mark its earlier ones superseded by it."""
    assert job.study_id is not None
    result = AnalysisResult(study_id=job.study_id, job_id=job.id, outcome=outcome, reason=reason,
                            algorithm_version=ALGORITHM_VERSION, findings=findings)
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
