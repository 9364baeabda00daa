"""Issue 19: a lesion drawn by the challenge generator (not the development phantom) that breaks
through L3's posterior wall with a 6 mm epidural mass, on a synthetic T1+T2+STIR study written
as DICOM and analysed by the whole pipeline, gets cortex, soft tissue and canal ``present``.

The study is drawn with a seed of its own, not one of ``challenge/frozen.toml``'s. At contrast 0.6
the lesion is about as dark as disc on T1 (0.55 of the marrow), so the marrow search seeds nothing
in the body's core: before issue 19 every sign of L3 was absent; the mass beyond the broken wall
(:mod:`analysis.signs.outside`) now finds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.results import SignState
from challenge.build import build_study
from node.pipeline.inputs import load_inputs
from node.pipeline.model import shipped_model
from node.pipeline.run import analyse
from node.study import group_dicom_folder
from phantom.writer import StudyIdentity, write_study

RECIPE = {
    "name": "test-epidural-6mm",
    "source": "synthetic",
    "sequences": ["T1", "T2", "STIR"],
    "thickness": 4.0,
    "gap": 0.5,
    "seed": 777,
    "lesion": [{"level": "L3", "shape": "lobulated", "contrast": 0.6, "extension": "epidural",
                "extension_mm": 6.0, "side": "posterior"}],
}


def test_posterior_wall_breakthrough_with_a_6_mm_epidural_mass(tmp_path: Path) -> None:
    study = build_study(RECIPE, Path("/nonexistent"))  # synthetic: no shared data needed
    truth = study.truth["L3"]
    assert truth.suspicious and truth.epidural and truth.extension_mm == pytest.approx(6.0, abs=0.6)
    write_study(StudyIdentity.synthetic(777), study.series, tmp_path)
    (files,) = group_dicom_folder(tmp_path).studies

    output = analyse(load_inputs(files), shipped_model())

    by_level = {ls.level: ls for ls in output.level_signs}
    l3 = by_level["L3"]
    assert l3.suspicious_for_malignancy == SignState.PRESENT, l3.reasons
    assert l3.cortical_destruction == SignState.PRESENT, l3.reasons
    assert l3.soft_tissue_extension == SignState.PRESENT, l3.reasons
    assert "epidural" in l3.ste_locations
    assert l3.canal_compromise == SignState.PRESENT, l3.reasons
    assert output.findings.study.canal_compromise == SignState.PRESENT
    others = [lv for lv, ls in by_level.items() if lv != "L3"
              and ls.suspicious_for_malignancy == SignState.PRESENT]
    assert others == []
