"""`lumbar-sentinel demo` end to end: its own node, a phantom study over DICOM, the findings it prints.

The printed findings table must be the analysis the node recorded in the
demo's database, level by level, and show the phantom's implanted findings
(a suspicious focal lesion at L3, a benign grade 2 fracture of L1). When the
tree writes result objects (issue 18) the SR, SEG and key image it names must
exist, and the SR must read back with highdicom.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from sqlalchemy import select

from node.db.engine import create_db_engine
from node.db.models import AnalysisResult
from tests.helpers.node import CLI
from tests.helpers.results import results_missing

SIGNS = {"present": "present", "-": "absent", "?": "indeterminate"}
SIGN_KEYS = ("suspicious_for_malignancy", "marrow_infiltration", "cortical_destruction",
             "soft_tissue_extension", "compression_fracture", "pathologic_fracture_pattern")
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _table_rows(output: str) -> dict[str, list[str]]:
    """The findings table's rows by level: 6 signs, Genant, height loss, lesion fraction."""
    rows = {}
    for line in output.splitlines():
        tokens = line.split()
        if len(tokens) == 10 and tokens[0] in LEVELS:
            rows[tokens[0]] = tokens[1:]
    return rows


def _number(value: object) -> str:
    return "n/a" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo") / "work"
    run = subprocess.run([str(CLI), "demo", "--workdir", str(workdir), "--small"],
                         capture_output=True, text=True, check=False, timeout=900)
    return run, workdir


def test_demo_prints_the_recorded_findings_and_stops_its_node(
        demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    run, workdir = demo
    assert run.returncode == 0, run.stdout + run.stderr
    assert "node stopped" in run.stdout
    assert "stopping" in (workdir / "node.log").read_text(encoding="utf-8")
    engine = create_db_engine(f"sqlite:///{workdir / 'demo.db'}")
    try:
        with engine.connect() as conn:
            results = conn.execute(select(AnalysisResult.outcome, AnalysisResult.findings)).all()
    finally:
        engine.dispose()
    assert [outcome for outcome, _ in results] == ["analysed"]
    findings = results[0][1]

    rows = _table_rows(run.stdout)
    assert list(rows) == [level["level"] for level in findings["levels"]]
    for level in findings["levels"]:
        row = rows[level["level"]]
        assert [SIGNS[cell] for cell in row[:6]] == [level[key] for key in SIGN_KEYS], level["level"]
        assert row[6:] == [_number(level[key]) for key in ("genant_grade", "height_loss_pct",
                                                           "lesion_fraction_pct")]
    # the phantom's implanted findings, as the table shows them
    assert rows["L3"][0] == "present"
    assert rows["L1"][4] == "present" and rows["L1"][6] == "2"
    study = findings["study"]
    assert f"suspicious levels: {study['suspicious_level_count']}" in run.stdout


def test_demo_names_its_result_files(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    run, workdir = demo
    assert run.returncode == 0, run.stdout + run.stderr
    findings_json = re.search(r"findings as JSON: (\S+)", run.stdout)
    assert findings_json and Path(findings_json.group(1)).is_file()
    missing = results_missing()
    if missing is not None:
        assert "writes no DICOM result objects" in run.stdout
        pytest.skip(missing)
    paths = {}
    for title, key in (("Structured report", "sr"), ("Segmentation", "seg"), ("Key image", "key_image")):
        found = re.search(rf"^  {title}[^:]*: (\S+)$", run.stdout, re.MULTILINE)
        assert found, f"no {title} in the output"
        paths[key] = Path(found.group(1))
        assert paths[key].is_file()
    report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(paths["sr"]))
    assert report.StudyInstanceUID == findings_json.group(1).split("/")[-3]
    assert pydicom.dcmread(paths["seg"], stop_before_pixels=True).Modality == "SEG"
    assert (workdir / "key-image.png").is_file()
