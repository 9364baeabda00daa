"""One phantom study with known truth, analysed once, and its result objects written.

The phantom (seed 11) has a focal lesion with epidural extension at L3 and
a benign Genant grade 2 compression fracture at L1; ``truth.json`` says so.
The analysis takes tens of seconds, so it runs once for every test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest

from node.pipeline.inputs import StudyInputs, load_inputs
from node.pipeline.run import AnalysisOutput, analyse
from node.results import ResultKind, ResultObject
from node.results.writer import write_result_objects
from node.study import StudyFiles, group_dicom_folder

CLI = Path(sys.executable).parent / "lumbar-sentinel"
CREATED = datetime(2026, 3, 4, 10, 20, 30)
ANALYSIS_KEY = "analysis 1"


@dataclass(frozen=True, eq=False)
class Analysed:
    phantom: Path
    truth: dict[str, Any]
    study: StudyFiles
    inputs: StudyInputs
    output: AnalysisOutput


@dataclass(frozen=True, eq=False)
class Written:
    analysed: Analysed
    objects: tuple[ResultObject, ...]

    def path(self, kind: ResultKind) -> Path:
        return next(o.path for o in self.objects if o.kind == kind)


@pytest.fixture(scope="session")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    from node.pipeline.model import shipped_model

    out = tmp_path_factory.mktemp("results_phantom") / "study"
    made = subprocess.run(
        [str(CLI), "phantom", str(out), "--seed", "11",
         "--lesion", "L3:focal:epidural", "--fracture", "L1:2:benign"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert made.returncode == 0, made.stderr
    study = group_dicom_folder(out / "dicom").studies[0]
    inputs = load_inputs(study)
    output = analyse(inputs, shipped_model())
    truth = json.loads((out / "truth.json").read_text())
    return Analysed(out, truth, study, inputs, output)


@pytest.fixture(scope="session")
def written(analysed: Analysed, tmp_path_factory: pytest.TempPathFactory) -> Written:
    objects = write_result_objects(
        analysed.output, analysed.inputs, analysed.study, tmp_path_factory.mktemp("results"),
        analysis_key=ANALYSIS_KEY, created=CREATED,
    )
    return Written(analysed, objects)


def dciodvfy_report(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's error and warning lines for one file."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


# dciodvfy knows only the standard's coding schemes; 99LSENT is declared in the SR itself.
ACCEPTED_WARNINGS = (
    "Unrecognized defined term <99LSENT> for value 1 of attribute <Coding Scheme Designator>",
)


def unexpected_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if not any(a in w for a in ACCEPTED_WARNINGS)]


def measurement_report(
    sr: hd.sr.EnhancedSR | hd.sr.ComprehensiveSR | hd.sr.Comprehensive3DSR,
) -> hd.sr.MeasurementReport:
    """The SR's content tree as the TID 1500 measurement report highdicom reads it into.

    ``sr.content`` is typed as a plain ``ContentSequence``; highdicom builds a
    ``MeasurementReport`` when the document's template is 1500, as ours is.
    """
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport), type(report).__name__
    return report


def code_of(item: Any) -> tuple[str, str]:
    """A coded concept's (code value, coding scheme designator)."""
    return (str(item.value), str(item.scheme_designator))


def evaluation_code(evaluation: hd.sr.QualitativeEvaluation) -> str:
    """The code value a qualitative evaluation answers with.

    highdicom types ``QualitativeEvaluation.value`` as a number; the CODE item holds a
    ``CodedConcept``.
    """
    value: object = evaluation.value
    assert isinstance(value, hd.sr.CodedConcept), type(value).__name__
    return str(value.value)
