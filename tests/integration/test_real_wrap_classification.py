"""Issue 3: real shared volumes wrapped as DICOM are classified by their acquisition tags.

The series descriptions are deliberately misleading, so only the tags
(TR, TE, TI, Scanning Sequence, Image Type) can give the right answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.volume import Plane, Sequence
from node.study import group_dicom_folder, read_series, select_series
from phantom.implants import ImplantSpec
from phantom.wrap import load_volume, wrap_volume
from phantom.writer import StudyIdentity, write_study

CASES = [
    ("VB1_02", Sequence.T1, "SAG T2 TSE"),
    ("VB1_03", Sequence.STIR, "SAG T1"),
    ("VB1_10", Sequence.T2, "SAG STIR"),
    ("VB2_02", Sequence.T2, "SAG T1 SE"),
    ("VB3_01", Sequence.DIXON, "SAG T2 TSE"),
]


@pytest.mark.parametrize(("case", "expected", "misleading"), CASES)
def test_wrapped_real_volume_is_classified_by_its_tags(
    shared_dir: Path, tmp_path: Path, case: str, expected: Sequence, misleading: str
) -> None:
    data = shared_dir / "data" / "real-lumbar-mri"
    source = load_volume(data / f"{case}_image.nii.gz", data / f"{case}_labels.nii.gz")
    study = wrap_volume(
        source.image,
        source.labels,
        source.sequence,
        ImplantSpec(),
        np.random.default_rng(0),
        acquisition=source.acquisition,
        description=misleading,
    )
    write_study(StudyIdentity.synthetic(7), study.series, tmp_path)

    files = group_dicom_folder(tmp_path).studies[0]
    selection = select_series([s.headers for s in files.series])
    assert selection.analysable, selection.problems
    (choice,) = selection.choices
    assert choice.series.classification is not None
    assert choice.series.classification.plane is Plane.SAGITTAL
    assert choice.sequence is expected, choice.series.classification.explanation

    volume = read_series(files.series[0].paths, headers=files.series[0].headers).volume
    assert 3.0 <= volume.spacing[2] <= 4.0, "a realistic clinical slice spacing"
    assert volume.array.shape == study.labels.array.shape
