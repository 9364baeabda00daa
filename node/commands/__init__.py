"""Sub-commands of `lumbar-sentinel`, one module each, imported only when chosen.

``--help`` lists the commands from this table without importing any of them:
their modules pull in pynetdicom, SQLAlchemy and Alembic, the phantom pulls in
SciPy and SimpleITK, and the analysis PyTorch, which together take seconds and
hundreds of MB that a command which does not use them should not pay.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """A sub-command: the module holding ``add_parser`` and ``run``, and its one-line help."""

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
        "node.commands.analyze", "analyse a folder of DICOM files offline (findings.json, vertebrae.nii.gz)"
    ),
    "phantom": Command(
        "phantom.cli", "write a synthetic lumbar MRI study with known abnormalities (test data)"
    ),
}
