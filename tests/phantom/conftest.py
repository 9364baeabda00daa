"""Shared phantom studies for the phantom tests (small grids keep the suite quick)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from analysis.volume import LEVEL_LABELS, Sequence
from phantom.implants import (
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantSpec,
    LesionSpec,
)
from phantom.render import SagittalGrid
from phantom.study import PhantomStudy, build_phantom

SMALL_GRID = SagittalGrid(n_slices=11, slice_mm=4.0, rows=224, cols=224, pixel_mm=1.25)
ABNORMAL = ImplantSpec(
    lesions=(LesionSpec(LEVEL_LABELS["L3"]), LesionSpec(LEVEL_LABELS["L1"], extension=Extension.EPIDURAL)),
    fractures=(
        FractureSpec(LEVEL_LABELS["L4"], 3, FractureShape.CRUSH, FracturePattern.MALIGNANT),
        FractureSpec(LEVEL_LABELS["L2"], 2, FractureShape.WEDGE, FracturePattern.BENIGN, fluid_sign=True),
    ),
)


@pytest.fixture(scope="session")
def normal_study() -> PhantomStudy:
    return build_phantom(ImplantSpec(), np.random.default_rng(11), grid=SMALL_GRID)


@pytest.fixture(scope="session")
def abnormal_study() -> PhantomStudy:
    sequences = (Sequence.T1, Sequence.T2, Sequence.STIR, Sequence.T1C)
    return build_phantom(ABNORMAL, np.random.default_rng(12), sequences, axial=True, grid=SMALL_GRID)


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy reports for one file (warnings are allowed)."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
