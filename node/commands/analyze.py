"""`lumbar-sentinel analyze DICOM_DIR --out OUT_DIR`: the offline analysis, for researchers.

The same study assembly and analysis as the node's worker, on a folder of
DICOM files; no database, no network. One study writes into OUT_DIR, several
into OUT_DIR/<Study Instance UID>/.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from node.settings import Settings
from node.study import SkippedFile, StudyFiles, group_dicom_folder

if TYPE_CHECKING:
    from node.results import ResultObject

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_ANALYSABLE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_WRITTEN = 3
PARTIAL_PREFIX = ".partial-"  # a run's results while they are written, inside the folder they go to


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dicom_dir", type=Path, metavar="DICOM_DIR", help="folder of DICOM files (recursive)")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="OUT_DIR", help="where results are written"
    )
    parser.add_argument("--study", default=None, metavar="UID", help="analyse only this Study Instance UID")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    console = Console(stderr=True, soft_wrap=True)
    if not args.dicom_dir.is_dir():
        console.print(f"[red]analyze:[/] {args.dicom_dir} is not a folder")
        return EXIT_BAD_INPUT
    problem = _unwritable(args.out)  # before minutes of analysis, not after them
    if problem is not None:
        console.print(f"[red]analyze:[/] cannot write results to {args.out}: {problem}")
        return EXIT_BAD_INPUT
    with console.status("reading DICOM headers") as status:
        folder = group_dicom_folder(args.dicom_dir, exclude=args.out)
        studies = list(folder.studies)
        if args.study is not None:
            studies = [s for s in studies if s.study_instance_uid == args.study]
        if not studies:
            found = ", ".join(s.study_instance_uid for s in folder.studies)
            console.print(
                f"[red]analyze:[/] no DICOM study found in {args.dicom_dir}"
                + (f" with Study Instance UID {args.study}" if args.study else "")
                + (f" (found: {found})" if found else "")
            )
            _print_skipped(folder.skipped, console)
            return EXIT_BAD_INPUT
        targets = [(study, args.out if len(studies) == 1 else args.out / study.study_instance_uid)
                   for study in studies]
        for study, out_dir in targets:
            other = _results_of_another_study(out_dir, study.study_instance_uid)
            if other is not None:
                console.print(f"[red]analyze:[/] {out_dir} holds the results of study {other}; not replacing "
                              f"them with study {study.study_instance_uid}'s: choose another --out")
                return EXIT_BAD_INPUT
        earlier = _results_of_another_study(args.out, "") if len(targets) > 1 else None
        if earlier is not None:
            console.print(f"[yellow]analyze:[/] {args.out} holds an earlier run's results of study {earlier} "
                          "at its top, left as they are: this run writes each study into a folder of its own")
        per_study = _per_study_results(args.out) if len(targets) == 1 else []
        if per_study:
            studies_word = "study" if len(per_study) == 1 else "studies"
            console.print(f"[yellow]analyze:[/] {args.out} holds an earlier run's results of "
                          f"{len(per_study)} {studies_word} in folders of their own "
                          f"({', '.join(per_study)}), left as they are: "
                          "this run writes its one study at the top")
        status.update("loading the vertebral-body model")
        # imported here, not at the top: the analysis and PyTorch take seconds to load,
        # and every other command (and --help) imports this module to build its parser
        from node.pipeline.model import shipped_model

        model = shipped_model()
        _print_skipped(folder.skipped, console)
        worst = EXIT_OK
        for study, out_dir in targets:
            worst = max(worst, _analyse_one(study, out_dir, model, console, status.update))
    return worst


def _unwritable(out: Path) -> str | None:
    """Why results cannot be written under ``out`` (made if missing), or None."""
    try:
        # SimpleITK cannot take a path that is not UTF-8: it aborted the process after the analysis
        str(out.resolve()).encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def _results_of_another_study(out_dir: Path, study_uid: str) -> str | None:
    """The Study Instance UID of an earlier run's results in ``out_dir``, when it is not ``study_uid``."""
    try:
        earlier = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none there, or not ours
        return None
    uid = earlier.get("study_instance_uid") if isinstance(earlier, dict) else None
    return uid if isinstance(uid, str) and uid != study_uid else None


def _per_study_results(out: Path) -> list[str]:
    """The folders under ``out`` holding an earlier several-study run's results, by name."""
    return sorted(folder.name for folder in out.iterdir()
                  if folder.is_dir() and _results_of_another_study(folder, "") == folder.name)


def _earlier_report(path: Path, study_uid: str) -> ResultObject | None:
    """The SR an earlier run left at ``path`` for the same study: the new SR lists it as its predecessor."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import Comprehensive3DSRStorage

    from node.results import ResultKind, ResultObject
    from node.storage import sha256_of

    try:
        ds = dcmread(path, stop_before_pixels=True)
        if str(ds.StudyInstanceUID) != study_uid or str(ds.SOPClassUID) != Comprehensive3DSRStorage:
            return None
        return ResultObject(ResultKind.SR, path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                            str(ds.SeriesInstanceUID), sha256_of(path))
    except (OSError, InvalidDicomError, AttributeError):  # none there, or not ours to succeed
        return None


def _move(path: Path, folder: Path) -> Path:
    """``path`` moved into ``folder`` under its name, over a file of that name."""
    target = folder / path.name
    path.replace(target)
    return target


def _print_skipped(skipped: Sequence[SkippedFile], console: Console, shown: int = 5) -> None:
    """Every notable skip, then the first ``shown`` others (files that are not DICOM, exact copies)."""
    rest = [item for item in skipped if not item.notable]
    for item in [item for item in skipped if item.notable] + rest[:shown]:
        console.print(f"  skipped {item.path}: {item.reason}")
    if len(rest) > shown:
        console.print(f"  ... and {len(rest) - shown} more skipped file(s)")


def _analyse_one(study: StudyFiles, out_dir: Path, model: Any, console: Console, update: Any) -> int:
    from node.pipeline.inputs import NotAnalysable, load_inputs
    from node.pipeline.run import FINDINGS_FILE, LABELS_FILE, analyse, write_results
    from node.results import ResultKind
    from node.results.source import SeriesNotReferable
    from node.results.writer import FILE_NAMES, write_result_objects

    uid = study.study_instance_uid
    update(f"study {uid}: reading series")
    try:
        inputs = load_inputs(study)
    except NotAnalysable as exc:
        console.print(f"[yellow]study {uid} cannot be analysed:[/] {exc}")
        return EXIT_NOT_ANALYSABLE
    for choice in inputs.selection.choices:
        console.print(f"  {choice.sequence}: {choice.series.label} ({choice.reason})")
    for note in inputs.notes:
        console.print(f"  note: {note}")
    output = analyse(inputs, model, progress=lambda step: update(f"study {uid}: {step}"))
    earlier = [out_dir / name for name in (FINDINGS_FILE, LABELS_FILE, *FILE_NAMES.values())
               if (out_dir / name).is_file()]
    replaced = _earlier_report(out_dir / FILE_NAMES[ResultKind.SR], uid)
    # Written whole beside the earlier run's files first, and only then moved over them: a write
    # failing part-way (a full disk) left this run's findings beside the earlier run's SR and SEG.
    staging = out_dir / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    unreferable: str | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        written = write_results(staging, output)
        update(f"study {uid}: writing the SR, SEG and key image")
        created = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        # an offline run is a new analysis each time: its objects get UIDs of their own, also
        # when another run analyses the same study in the same second
        key = f"offline analyze {created.isoformat()} {uuid.uuid4()}"
        try:
            staged = write_result_objects(output, inputs, study, staging, analysis_key=key, created=created,
                                          predecessors=[replaced] if replaced is not None else [])
        except SeriesNotReferable as exc:  # the findings stand; the DICOM objects cannot be made
            unreferable = str(exc)
            staged = ()
        # the findings last: they say whose results the folder holds
        objects = [replace(obj, path=_move(obj.path, out_dir)) for obj in staged]
        labels_path, findings_path = (_move(path, out_dir) for path in reversed(written))
        # A file of the earlier run that this one does not write (a SEG, when no body was
        # found now) would read as part of this result.
        stale = [path for path in earlier
                 if path not in {findings_path, labels_path, *(obj.path for obj in objects)}]
        for path in stale:
            path.unlink()
    except OSError as exc:  # a full disk, a file where a study's folder should go
        console.print(f"[red]study {uid}: the results could not be written to {out_dir}:[/] {exc}")
        return EXIT_NOT_WRITTEN
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = output.findings.study
    console.print(
        f"[bold]study {uid}[/]: {len(output.segmentation.bodies)} vertebral bodies, "
        f"suspicious for malignancy: {summary.suspicious_for_malignancy}, "
        f"suspicious levels: {summary.suspicious_level_count}"
    )
    if earlier:
        console.print(f"  replaced the earlier results in {out_dir}"
                      + (f" (removed {', '.join(p.name for p in stale)}, which this run does not write)"
                         if stale else ""))
    console.print(f"  wrote {findings_path} and {labels_path}")
    for obj in objects:
        console.print(f"  wrote {obj.path} ({obj.kind}, SOP Instance UID {obj.sop_instance_uid})")
    console.print("  Triage aid: flags suspicious features for a radiologist; not a diagnosis.")
    if unreferable is not None:
        console.print(f"[yellow]study {uid}:[/] {unreferable}")
        return EXIT_NOT_WRITTEN
    return EXIT_OK
