"""Issue 19: a T2-only normal real spine, written as DICOM and analysed by the whole pipeline
(the code path of ``lumbar-sentinel analyze``), has no ``present`` level, and its summary says
plainly that a T1 is needed to exclude infiltration.

VB2_07 (T2) is a normal volunteer's spine; before issue 19 the pipeline called its S1 suspicious
on T2 alone (a marrow region 1.33 times as bright as the lumbar marrow read as tumour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.findings import NO_T1_SENTENCE
from analysis.results import SignState
from node.pipeline.inputs import load_inputs
from node.pipeline.model import shipped_model
from node.pipeline.run import analyse
from node.study import group_dicom_folder
from phantom.implants import ImplantSpec
from phantom.wrap import load_volume, wrap_volume
from phantom.writer import StudyIdentity, write_study


@pytest.mark.parametrize("case", ["VB2_07"])
def test_t2_only_normal_real_spine_has_no_present_level(shared_dir: Path, tmp_path: Path, case: str) -> None:
    data = shared_dir / "data" / "real-lumbar-mri"
    source = load_volume(data / f"{case}_image.nii.gz", data / f"{case}_labels.nii.gz")
    study = wrap_volume(source.image, source.labels, source.sequence, ImplantSpec(), np.random.default_rng(0),
                        acquisition=source.acquisition)
    write_study(StudyIdentity.synthetic(11), study.series, tmp_path)
    (files,) = group_dicom_folder(tmp_path).studies
    inputs = load_inputs(files)
    assert set(inputs.volumes) == {source.sequence}

    output = analyse(inputs, shipped_model())

    assert output.level_signs, "the bodies were found"
    present = [ls.level for ls in output.level_signs if ls.suspicious_for_malignancy == SignState.PRESENT]
    assert present == [], [
        (ls.level, ls.reasons) for ls in output.level_signs if ls.level in present
    ]
    assert all(ls.marrow_infiltration != SignState.PRESENT for ls in output.level_signs)
    summary = output.findings.study
    assert summary.suspicious_level_count == 0
    assert summary.suspicious_for_malignancy == SignState.INDETERMINATE
    assert NO_T1_SENTENCE in summary.impression
