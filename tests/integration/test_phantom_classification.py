"""Issue 3: classification picks the right phantom series when descriptions are empty or misleading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from analysis.volume import Sequence
from node.study import group_dicom_folder, select_series
from phantom.implants import ImplantSpec
from phantom.study import build_phantom
from phantom.writer import StudyIdentity, write_study

SEQUENCES = (Sequence.T1, Sequence.T2, Sequence.STIR, Sequence.T1C)
# Each sequence described as another one, as a mislabelled protocol would.
MISLEADING = {
    Sequence.T1: "SAG T2 TSE",
    Sequence.T2: "SAG STIR",
    Sequence.STIR: "SAG T1 POST GD",
    Sequence.T1C: "SAG T1 PRE",
}


@pytest.mark.parametrize("labelling", ["empty", "misleading"])
@pytest.mark.parametrize("enhanced", [False, True], ids=["single-frame", "enhanced"])
def test_series_chosen_by_acquisition_tags(tmp_path: Path, labelling: str, enhanced: bool) -> None:
    phantom = build_phantom(ImplantSpec(), np.random.default_rng(5), sequences=SEQUENCES)
    series = [
        dataclasses.replace(s, description="" if labelling == "empty" else MISLEADING[s.sequence])
        for s in phantom.series
    ]
    paths = write_study(StudyIdentity.synthetic(5), series, tmp_path, enhanced=enhanced)
    uid_of = {s.sequence: _series_uid(paths, i) for i, s in enumerate(series)}

    study = group_dicom_folder(tmp_path).studies[0]
    selection = select_series([s.headers for s in study.series])

    assert selection.analysable, selection.problems
    chosen = {c.sequence: c.series.series_instance_uid for c in selection.choices}
    assert chosen == uid_of


def _series_uid(paths: list[Path], index: int) -> str:
    from pydicom import dcmread

    per_series = len(paths) // len(SEQUENCES)
    return str(dcmread(paths[index * per_series], stop_before_pixels=True).SeriesInstanceUID)
