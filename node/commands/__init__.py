"""Sub-commands of `lumbar-sentinel`, one module each, imported only when chosen.

``--help`` lists the commands from this table without importing any of them:
their modules pull in pynetdicom, SQLAlchemy and Alembic, the phantom pulls in
SciPy and SimpleITK, and the analysis PyTorch, which together take seconds and
hundreds of MB that a command which does not use them should not pay.
"""

from __future__ import annotations

import argparse
import importlib
import math
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """A sub-command: its module (``configure(parser)`` adds its arguments and handler) and help line."""

    module: str
    help: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {
    "serve": Command("node.commands.serve", "run the DICOM receiver, completion monitor and workers"),
    "worker": Command("node.commands.worker", "run analysis workers only (no DICOM receiver)"),
    "echo": Command("node.commands.echo", "C-ECHO a DICOM node"),
    "db": Command("node.commands.db", "database schema"),
    "analyze": Command(
        "node.commands.analyze",
        "analyse a folder of DICOM files offline (findings.json, vertebrae.nii.gz, SR, SEG, key image)",
    ),
    "phantom": Command(
        "phantom.cli", "write a synthetic lumbar MRI study with known abnormalities (test data)"
    ),
    "demo": Command("node.commands.demo",
                    "try the node on this machine: a phantom study in, its findings and results out"),
    "studies": Command("node.commands.studies",
                       "recent studies with their status (received, analysed, delivered)"),
    "study": Command("node.commands.study",
                     "the whole history of one study (associations, series, analyses, deliveries)"),
    "results": Command("node.commands.results",
                       "current analysis results: findings summary, flagged levels, delivery"),
    "reanalyze": Command("node.commands.reanalyze", "queue a new analysis of a stored study"),
    "resend": Command("node.commands.resend",
                      "send deliveries again: one study, one destination, or every dead letter"),
    "retention": Command("node.commands.retention",
                         "delete received images of studies delivered storage.retention.delete_after ago"),
    "health": Command("node.commands.health", "GET this host's /healthz (exit 0 when healthy)"),
}


def grace_seconds(value: str) -> float:
    """``--grace`` of ``serve`` and ``worker``: seconds, not negative (an argparse usage error otherwise)."""
    try:
        seconds = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not negative: {value!r}")
    return seconds
