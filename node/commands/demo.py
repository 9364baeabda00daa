"""`lumbar-sentinel demo`: a node, a phantom study with findings, its analysis, on this machine alone.

Starts a node on the embedded default (SQLite and a storage folder, in a new
folder that is kept so the results can be opened afterwards), writes a
phantom lumbar MR study (a focal lesion at L3 and a benign grade 2 fracture
of L1 by default), sends it to the node over DICOM, follows the study through
reception, quiet period and analysis, prints the findings and the result
files with how to open them, and stops the node. The configured database,
storage, network settings and destinations are not used: the demo touches
nothing but its own folder and a free port on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select

from node.commands.demo_report import print_findings, print_result_files
from node.commands.signals import stop_on_signals
from node.db.models import AnalysisResult, Job, JobStatus, Study, StudyStatus
from node.settings import AllowedCaller, Settings, TlsSettings

log = logging.getLogger(__name__)

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
DEMO_CALLER = "LSENT-DEMO"
# A smaller study than the phantom's default grid: seconds less to write and analyse.
SMALL_GRID = {"n_slices": 9, "rows": 160, "cols": 160, "pixel_mm": 1.6}
STAGES = ("sending the study", "waiting for the quiet period", "analysis queued", "analysing")


class DemoError(RuntimeError):
    """The demo could not finish; the message says where it stopped."""


def configure(parser: argparse.ArgumentParser) -> None:
    from phantom.cli import parse_fracture, parse_lesion

    parser.add_argument("--workdir", type=Path, default=None,
                        help="new or empty folder for the demo's database, storage and results "
                             "(default: a new temporary folder, kept afterwards)")
    parser.add_argument("--lesion", action="append", type=parse_lesion, default=None,
                        metavar="LEVEL:KIND[:EXT]", help="phantom lesion (default L3:focal)")
    parser.add_argument("--fracture", action="append", type=parse_fracture, default=None,
                        metavar="LEVEL:GRADE[:PATTERN]", help="phantom fracture (default L1:2:benign)")
    parser.add_argument("--seed", type=int, default=7, help="phantom random seed (default 7)")
    parser.add_argument("--small", action="store_true",
                        help="a smaller phantom (9 slices of 160 x 160): quicker, coarser key image")
    parser.add_argument("--quiet-period", type=float, default=3.0,
                        help="seconds without a new instance before the study is complete (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the analysis before giving up (default 900)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # a fixed width when the output is not a terminal, so the findings table keeps one row per level
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 132)
    if args.quiet_period <= 0 or args.timeout <= 0:
        console.print("[red]demo:[/] --quiet-period and --timeout must be positive")
        return USAGE
    workdir = _workdir(args.workdir)
    if workdir is None:
        console.print(f"[red]demo:[/] {args.workdir} exists and is not empty; give a new or empty folder")
        return USAGE
    demo = demo_settings(settings, workdir, _free_port(), args.quiet_period)
    console.print(f"[bold]Lumbar Sentinel demo[/] in {workdir}")
    with stop_on_signals(threading.Event()) as stop, _node_log(workdir / "node.log"):
        try:
            return _run(args, demo, workdir, console, stop)
        except DemoError as exc:
            console.print(f"[red]demo failed:[/] {exc}")
            console.print(f"  the node's log: {workdir / 'node.log'}")
            return INTERRUPTED if stop.is_set() else FAILED


def demo_settings(settings: Settings, workdir: Path, port: int, quiet_period: float) -> Settings:
    """``settings`` with everything the demo must not share with a real node replaced.

    Copied, not re-validated from a file, so that ``LSENT_*`` variables meant for a
    real node (its database, its port) cannot redirect the demo.
    """
    update: dict[str, Any] = {
        "dicom": settings.dicom.model_copy(update={
            "host": "127.0.0.1", "port": port,
            "allowed_callers": (AllowedCaller(ae_title=DEMO_CALLER, addresses=("127.0.0.1/32",)),),
        }),
        "tls": TlsSettings(),
        "storage": settings.storage.model_copy(update={
            "root": workdir / "storage", "results": workdir / "results", "min_free_bytes": 0}),
        "database": settings.database.model_copy(update={"url": f"sqlite:///{workdir / 'demo.db'}"}),
        "study": settings.study.model_copy(update={
            "quiet_period": timedelta(seconds=quiet_period),
            "completion_poll_interval": timedelta(seconds=0.2)}),
        "queue": settings.queue.model_copy(update={"workers": 1, "poll_interval": timedelta(seconds=0.2)}),
    }
    delivery = getattr(settings, "delivery", None)
    if delivery is not None:
        # results stay in the demo's folder: no configured PACS gets a phantom study
        fields = type(delivery).model_fields
        quiet: dict[str, Any] = {"destinations": ()} if "destinations" in fields else {}
        if "return_to_sender" in fields:
            quiet["return_to_sender"] = delivery.return_to_sender.model_copy(update={"enabled": False})
        update["delivery"] = delivery.model_copy(update=quiet)
    return settings.model_copy(update=update)


def _run(args: argparse.Namespace, settings: Settings, workdir: Path, console: Console,
         stop: threading.Event) -> int:
    from node.app import Node
    from node.db.engine import create_db_engine
    from node.db.migrate import upgrade

    with console.status("writing a phantom lumbar MR study"):
        phantom = write_phantom(workdir / "phantom", args)
    console.print(f"  phantom study: {len(phantom.files)} instances, implanted: {phantom.implanted}")
    engine = create_db_engine(settings.database.url)
    try:
        with console.status("starting the node (loading the analysis takes a few seconds)"):
            upgrade(engine)
            node = Node(settings, engine)
            try:
                node.start()
            except OSError as exc:
                node.stop(0, 0)
                raise DemoError(f"the node cannot listen on 127.0.0.1:{settings.dicom.port}: {exc}") from exc
        console.print(f"  node {settings.dicom.ae_title} listening on 127.0.0.1:{settings.dicom.port}")
        try:
            started = time.monotonic()
            _follow(settings, engine, phantom, console, stop, args.timeout)
            console.print(f"  analysed {time.monotonic() - started:.0f} s after sending")
            findings = _findings(engine, phantom.study_uid)
        finally:
            with console.status("stopping the node"):
                node.stop(5.0, 5.0)
        console.print("  node stopped")
    finally:
        engine.dispose()
    print_findings(console, findings)
    print_result_files(console, settings.storage.results / phantom.study_uid, workdir)
    console.print(f"\nEverything is in {workdir} (delete it when done).")
    return OK


@dataclass(frozen=True)
class Phantom:
    study_uid: str
    files: list[Path]
    implanted: str


def write_phantom(folder: Path, args: argparse.Namespace) -> Phantom:
    import numpy as np

    from analysis.volume import Sequence
    from phantom.cli import parse_fracture, parse_lesion
    from phantom.implants import ImplantSpec
    from phantom.output import write_outputs
    from phantom.render import SagittalGrid
    from phantom.study import build_phantom
    from phantom.writer import StudyIdentity

    lesions = args.lesion if args.lesion is not None else [parse_lesion("L3:focal")]
    fractures = args.fracture if args.fracture is not None else [parse_fracture("L1:2:benign")]
    grid = SagittalGrid(**SMALL_GRID) if args.small else SagittalGrid()  # type: ignore[arg-type]
    study = build_phantom(ImplantSpec(lesions=tuple(lesions), fractures=tuple(fractures)),
                          np.random.default_rng(args.seed),
                          (Sequence.T1, Sequence.T2, Sequence.STIR), grid=grid)
    identity = StudyIdentity.synthetic(args.seed)
    truth = write_outputs(study, folder, identity, extra={"seed": args.seed})
    return Phantom(identity.study_uid, sorted((folder / "dicom").rglob("*.dcm")),
                   _implanted(truth) or "no abnormality")


def _implanted(truth: dict[str, Any]) -> str:
    """The phantom's flagged levels from its truth document, e.g. "L1 fracture, L3 suspicious"."""
    parts = []
    for level in truth.get("levels", []):
        signs = [name for name, key in (("suspicious", "suspicious_for_malignancy"),
                                        ("fracture", "compression_fracture"))
                 if level.get(key) == "present"]
        if signs:
            parts.append(f"{level['level']} {' and '.join(signs)}")
    return ", ".join(parts)


def send_study(files: list[Path], settings: Settings) -> None:
    """C-STORE every file to the node in one association; DemoError unless all succeed."""
    ae = AE(ae_title=DEMO_CALLER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    contexts: dict[str, set[str]] = {}
    for path in files:
        header = dcmread(path, stop_before_pixels=True)
        contexts.setdefault(str(header.SOPClassUID), set()).add(str(header.file_meta.TransferSyntaxUID))
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title=settings.dicom.ae_title)
    if not assoc.is_established:
        raise DemoError("the node refused the association")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            if not status or status.Status != 0x0000:
                raise DemoError(f"the node did not store {path.name}: status {status}")
    finally:
        if assoc.is_established:
            assoc.release()


def _follow(settings: Settings, engine: Engine, phantom: Phantom, console: Console,
            stop: threading.Event, timeout: float) -> None:
    """Send the study and show its way through the node until it is analysed."""
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(STAGES[0], total=len(STAGES))
        send_study(phantom.files, settings)
        console.print(f"  sent {len(phantom.files)} instances to {settings.dicom.ae_title}")
        while True:
            stage, problem = _stage(engine, phantom.study_uid)
            if problem is not None:
                raise DemoError(problem)
            if stage == len(STAGES):
                return
            progress.update(task, completed=stage, description=STAGES[stage])
            if stop.wait(0.25):
                raise DemoError("interrupted")
            if time.monotonic() > deadline:
                raise DemoError(f"no analysis after {timeout:g} s (at: {STAGES[stage]})")


def _stage(engine: Engine, study_uid: str) -> tuple[int, str | None]:
    """How far the study got (an index into STAGES, len(STAGES) when analysed), or why it failed."""
    with engine.connect() as conn:
        study = conn.execute(select(Study.id, Study.status, Study.skip_reason)
                             .where(Study.study_instance_uid == study_uid)).one_or_none()
        if study is None:
            return 0, None
        job = conn.execute(select(Job.status, Job.last_error).where(Job.study_id == study.id)
                           .order_by(Job.id.desc()).limit(1)).one_or_none()
    if study.status == StudyStatus.ANALYSED:
        return len(STAGES), None
    if study.status == StudyStatus.SKIPPED:
        return 0, f"the node skipped the study: {study.skip_reason}"
    if study.status == StudyStatus.FAILED:
        return 0, study.skip_reason
    if job is not None and job.status == JobStatus.FAILED:
        return 0, f"the analysis failed: {job.last_error}"
    if study.status == StudyStatus.RECEIVING:
        return 1, None
    return (3 if job is not None and job.status == JobStatus.RUNNING else 2), None


def _findings(engine: Engine, study_uid: str) -> dict[str, Any]:
    with engine.connect() as conn:
        findings: dict[str, Any] | None = conn.scalar(
            select(AnalysisResult.findings).join(Study, Study.id == AnalysisResult.study_id)
            .where(Study.study_instance_uid == study_uid, AnalysisResult.superseded_by_id.is_(None)))
    if findings is None:
        raise DemoError("the study is analysed but its result is missing")
    return findings


def _workdir(requested: Path | None) -> Path | None:
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="lumbar-sentinel-demo-")).resolve()
    if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
        return None
    requested.mkdir(parents=True, exist_ok=True)
    return requested.resolve()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _node_log(path: Path) -> Iterator[None]:
    """The node's log lines go to ``path`` for the demo's duration, not over the progress display."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()
