"""The image's wheel: built from exactly what the Dockerfile's build stage copies, it holds
the service, the migrations and the shipped weights (the image has no source tree)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.ops.deployment import REPO, dockerfile_stages


def test_the_build_stage_copies_enough_to_build_a_complete_wheel(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for copy in dockerfile_stages()[0].arguments("COPY"):
        *paths, _ = copy.split()
        for name in paths:
            origin = REPO / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("lumbar_sentinel-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("node/cli.py", "node/metrics/server.py", "node/commands/health.py",
                     "node/db/migrations/env.py", "phantom/spine.py", "analysis/__init__.py"):
        assert expected in names, f"{expected} missing from the wheel"
    assert any(name.startswith("node/db/migrations/versions/") for name in names)
    assert any(name.startswith("analysis/vertebrae/weights/onnx/") and name.endswith(".onnx.xz")
               for name in names)
    assert not any(name.startswith("tests/") for name in names)
