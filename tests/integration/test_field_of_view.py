"""Series of one study with different fields of view, through the whole pipeline (the code path
of ``lumbar-sentinel analyze``): a level a series does not reach is read on the others."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from analysis.results import SignState
from analysis.volume import Sequence
from node.pipeline.inputs import load_inputs
from node.pipeline.model import shipped_model
from node.pipeline.run import analyse
from node.study import group_dicom_folder
from phantom.render import SagittalGrid
from phantom.specs import ImplantSpec
from phantom.study import ImageSeries, build_phantom
from phantom.writer import StudyIdentity, write_study

pytestmark = pytest.mark.slow


def _shorter(series: ImageSeries, rows: int) -> ImageSeries:
    """``series`` acquired without its first and last ``rows`` rows (a smaller head-foot field)."""
    dx, dy, dz = (float(v) * rows * series.pixel_spacing[0] for v in series.orientation[3:])
    return dataclasses.replace(
        series, pixels=np.ascontiguousarray(series.pixels[:, rows:-rows]),
        positions=tuple((x + dx, y + dy, z + dz) for x, y, z in series.positions))


def test_a_t1_that_stops_short_of_the_spine_invents_no_lesion(tmp_path: Path) -> None:
    # Before: outside the T1's field the padding read as dark T1 marrow, and normal bodies at
    # its edge were called infiltrated.
    study = build_phantom(ImplantSpec(), np.random.default_rng(11), grid=SagittalGrid(n_slices=11))
    rows = study.series[0].pixels.shape[1] // 5
    series = [_shorter(s, rows) if s.sequence == Sequence.T1 else s for s in study.series]
    write_study(StudyIdentity.synthetic(5), series, tmp_path)
    (files,) = group_dicom_folder(tmp_path).studies

    output = analyse(load_inputs(files), shipped_model())

    assert len(output.level_signs) >= 5
    states = {ls.level: ls.suspicious_for_malignancy for ls in output.level_signs}
    assert SignState.PRESENT not in states.values(), states
    missed = [ls for ls in output.level_signs if ls.marrow_t1 == SignState.INDETERMINATE]
    assert missed, "the T1 reaches every body: the test needs a shorter T1"
    for ls in missed:
        assert any("the sagittal T1 does not cover the body" in r for r in ls.reasons), (ls.level, ls.reasons)
    covered = [ls for ls in output.level_signs if ls not in missed and ls.level != "S1"]
    assert covered and all(ls.marrow_infiltration == SignState.ABSENT for ls in covered)
