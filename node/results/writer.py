"""Write the result objects of one analysis (results contract) and describe each for delivery.

``write_result_objects`` builds the SEG, the SR that references it and the
key image, writes them into a folder and returns one :class:`ResultObject`
per file. All UIDs derive from the study, the analysis key and the
algorithm version (:class:`~node.results.identity.ResultIdentity`), and the
dates from ``created``: the same job written twice gives the same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence as Seq
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from node.pipeline.inputs import StudyInputs
from node.pipeline.run import AnalysisOutput
from node.results import ResultKind, ResultObject
from node.results.identity import ResultIdentity, local_time, stamp_times
from node.results.key_image import build_key_image
from node.results.seg import build_segmentation, plan_segments
from node.results.source import segmented_series
from node.results.sr import build_sr
from node.study import StudyFiles

FILE_NAMES: dict[ResultKind, str] = {
    ResultKind.SEG: "seg.dcm",
    ResultKind.SR: "sr.dcm",
    ResultKind.KEY_IMAGE: "key_image.dcm",
}


def _save(kind: ResultKind, ds: Dataset, out_dir: Path, identity: ResultIdentity) -> ResultObject:
    stamp_times(ds, identity)
    path = out_dir / FILE_NAMES[kind]
    ds.save_as(path, enforce_file_format=True)
    return ResultObject(
        kind=kind,
        path=path,
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _evidence(primary: Seq[Dataset], inputs: StudyInputs, study: StudyFiles) -> list[Dataset]:
    """The primary series' images, then those of every other series the findings used (T1, STIR...)."""
    drawn_on = {str(ds.SeriesInstanceUID) for ds in primary}
    used = set(inputs.series_uids.values()) - drawn_on
    return [*primary, *(header for series in study.series if series.series_instance_uid in used
                        for header in series.headers)]


def write_result_objects(
    output: AnalysisOutput,
    inputs: StudyInputs,
    study: StudyFiles,
    out_dir: Path,
    *,
    analysis_key: str,
    created: datetime,
    predecessors: Seq[ResultObject] = (),
) -> tuple[ResultObject, ...]:
    """Write the SEG, SR and key image of ``output`` into ``out_dir``.

    ``inputs`` and ``study`` are what the analysis ran on (the bodies were
    drawn on its primary series, whose files ``study`` holds);
    ``analysis_key`` names the analysis or job (with the study and the
    algorithm version it seeds every UID); ``created`` is the analysis time
    (naive: UTC), written as the content and instance creation time in the
    source's time (:func:`~node.results.identity.local_time`); ``predecessors``
    are earlier SRs of the study this analysis replaces (Predecessor
    Documents Sequence). A study
    with no vertebral body found gets no SEG and an SR without level groups.
    """
    if not isinstance(output, AnalysisOutput):
        raise TypeError(f"output must be an AnalysisOutput, got {type(output).__name__}")
    if not isinstance(out_dir, Path):
        raise TypeError(f"out_dir must be a Path, got {type(out_dir).__name__}")
    if isinstance(predecessors, (str, ResultObject)):
        raise TypeError("predecessors must be a sequence of ResultObject")
    for earlier in predecessors:
        if not isinstance(earlier, ResultObject):
            raise TypeError(f"predecessors must hold ResultObject, got {type(earlier).__name__}")
        if earlier.kind != ResultKind.SR:
            raise ValueError(f"predecessors: {earlier.sop_instance_uid} is a {earlier.kind}, not an SR")
    if not isinstance(created, datetime):
        raise TypeError(f"created must be a datetime, got {type(created).__name__}")
    if output.findings.study_instance_uid != inputs.study_instance_uid:
        raise ValueError("output: its findings are of another study than inputs")
    source = segmented_series(inputs, study, output.segmentation.labels)
    written_at, offset = local_time(created, source.reference)
    identity = ResultIdentity(
        study_instance_uid=output.findings.study_instance_uid,
        analysis_key=analysis_key,
        algorithm_version=output.findings.algorithm_version,
        created=written_at,
        timezone_offset=offset,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[ResultObject] = []
    seg = None
    plans = plan_segments(output.segmentation, output.level_signs)
    if any(not p.is_lesion for p in plans):
        seg, plans = build_segmentation(source, output.segmentation, output.level_signs, identity)
        written.append(_save(ResultKind.SEG, seg, out_dir, identity))
    sr = build_sr(output.findings, seg, plans, _evidence(source.datasets, inputs, study), identity,
                  predecessors)
    written.append(_save(ResultKind.SR, sr, out_dir, identity))
    key = build_key_image(source, output.segmentation, output.level_signs, output.findings, identity)
    written.append(_save(ResultKind.KEY_IMAGE, key, out_dir, identity))
    return tuple(written)
