"""What each command loads: the inference runtime only with the analysis, heavy libraries only when used.

`--help` and the admin commands must start in a fraction of a second, and a
receiver-only node must stay small; both follow from not importing what they
do not run. The modules a command imports are read from ``-X importtime``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.node import running_node

# the inference runtime and the image libraries only the analysis and the phantom use
ANALYSIS_ONLY = ("torch", "onnxruntime", "SimpleITK", "scipy", "skimage")
NODE_IO = ("sqlalchemy", "alembic", "pynetdicom", "pydicom", "numpy", "analysis", "phantom")
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def imported_packages(*args: str) -> set[str]:
    """Top-level packages `lumbar-sentinel ARGS` imports (whatever its exit status)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "node.cli", *args],
        capture_output=True, text=True, timeout=120,
    )
    modules = _IMPORTED.findall(run.stderr)
    assert modules, f"no import trace from {args}: {run.stderr[-2000:]}"
    return {m.split(".")[0] for m in modules}


def test_help_imports_no_command_module() -> None:
    loaded = imported_packages("--help")
    assert not loaded & {*ANALYSIS_ONLY, *NODE_IO}, sorted(loaded & {*ANALYSIS_ONLY, *NODE_IO})


@pytest.mark.parametrize(
    "args",
    [
        ("echo", "127.0.0.1", "1", "--timeout", "1"),
        ("echo", "--help"),
        ("db", "--help"),
        ("serve", "--help"),
        ("worker", "--help"),
        ("analyze", "--help"),
    ],
)
def test_commands_do_not_import_the_analysis_to_start(args: tuple[str, ...]) -> None:
    loaded = imported_packages(*args)
    assert not loaded & set(ANALYSIS_ONLY), sorted(loaded & set(ANALYSIS_ONLY))


def test_echo_does_not_import_the_database() -> None:
    loaded = imported_packages("echo", "127.0.0.1", "1", "--timeout", "1")
    assert "pynetdicom" in loaded
    assert not loaded & {"sqlalchemy", "alembic"}, sorted(loaded & {"sqlalchemy", "alembic"})


def test_receiver_only_node_maps_no_inference_runtime(tmp_path: Path) -> None:
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}") as node:
        assert node.process is not None
        maps = Path(f"/proc/{node.process.pid}/maps").read_text()
    libraries = {line.split()[-1] for line in maps.splitlines() if line.endswith(".so") or ".so." in line}
    heavy = sorted(lib for lib in libraries if re.search(r"/(torch|SimpleITK|onnxruntime|scipy)/", lib))
    assert libraries, "no shared libraries mapped: the maps were not read"
    assert not heavy, heavy
