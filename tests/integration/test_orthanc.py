"""Orthanc as the hospital's PACS, end to end, with the reference set-up of ``config/orthanc/``.

A phantom lumbar MR study is uploaded to Orthanc over its REST API. Orthanc's
Lua rule forwards it to a running node once it is stable; the node analyses
it. A study of another body part, uploaded first, stays in the PACS. When the
tree has result objects and their delivery (issue 18), the node is also
configured with Orthanc as a destination, and the SR, SEG and key image come
back into the same study, checked through Orthanc's REST API, without the
study being routed to the node a second time.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, func, select

from node.db.models import AnalysisResult, Association, Study, StudyStatus
from tests.helpers.node import CLI, NodeProcess, free_port, make_node
from tests.helpers.orthanc import OrthancProcess, orthanc_binary, render_config
from tests.helpers.results import KEY_IMAGE_MODALITIES, delivery_missing, destination
from tests.queue.helpers import wait_until

pytestmark = pytest.mark.skipif(orthanc_binary() is None,
                                reason="Orthanc is not installed (Debian package orthanc)")

TRACKING_IDENTIFIER = ("112039", "DCM")
ANALYSIS_TIMEOUT = 300.0


@dataclass
class Scenario:
    node: NodeProcess
    orthanc: OrthancProcess
    study_uid: str
    other_study_uid: str
    delivery: str | None  # why results are not delivered, or None


def _phantom(folder: Path) -> list[Path]:
    """A small phantom study with a lesion at L3 (9 slices of 160 x 160: seconds to analyse)."""
    run = subprocess.run(
        [str(CLI), "phantom", str(folder), "--lesion", "L3:focal", "--seed", "11",
         "--slices", "9", "--matrix", "160", "--pixel", "1.6"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return sorted((folder / "dicom").rglob("*.dcm"))


def _other_body_part(files: list[Path], folder: Path) -> list[Path]:
    """One series of the phantom re-labelled as a new brain MR study: the rule must not route it."""
    folder.mkdir()
    study_uid, series_uid = generate_uid(), generate_uid()
    first_series = files[0].parent
    written = []
    for path in (p for p in files if p.parent == first_series):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.BodyPartExamined = "BRAIN"
        ds.StudyDescription = "MR BRAIN"
        written.append(folder / path.name)
        ds.save_as(written[-1])
    return written


def _analysed(engine: Engine, study_uid: str) -> bool:
    with engine.connect() as conn:
        status = conn.scalar(select(Study.status).where(Study.study_instance_uid == study_uid))
    return status == StudyStatus.ANALYSED


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Orthanc and a node wired as in docs/orthanc.md; both studies uploaded; the lumbar one analysed."""
    root = tmp_path_factory.mktemp("orthanc-e2e")
    files = _phantom(root / "phantom")
    other = _other_body_part(files, root / "brain")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    other_uid = str(pydicom.dcmread(other[0], stop_before_pixels=True).StudyInstanceUID)

    why_not = delivery_missing()
    orthanc_dicom_port = free_port()
    sections: dict[str, dict[str, Any]] = {
        "dicom": {"allowed_callers": [{"ae_title": "ORTHANC", "addresses": ["127.0.0.1/32"]}]},
        "study": {"quiet_period": 2, "completion_poll_interval": 0.2},
        "queue": {"workers": 1, "poll_interval": 0.2},
        "storage": {"results": str(root / "node" / "results")},
    }
    if why_not is None:
        sections["delivery"] = {"destinations": [destination("orthanc", "ORTHANC", orthanc_dicom_port)]}
    node = make_node(root / "node", f"sqlite:///{root / 'node.db'}", sections)
    orthanc = render_config(root / "orthanc", node_ae_title=node.ae_title, node_port=node.port,
                            dicom_port=orthanc_dicom_port)
    node.start()
    try:
        orthanc.start()
        try:
            # the other study first: the Lua events are handled in order, so once the lumbar
            # study has reached the node, the rule has already looked at this one
            for path in other + files:
                assert orthanc.upload(path)["Status"] == "Success"
            with node.engine() as engine:
                wait_until(lambda: _analysed(engine, study_uid), "the node's analysis of the forwarded study",
                           timeout=ANALYSIS_TIMEOUT)
            yield Scenario(node, orthanc, study_uid, other_uid, why_not)
        finally:
            orthanc.stop()
    finally:
        node.terminate()


def test_orthanc_routes_the_stable_lumbar_mr_study_to_the_node(scenario: Scenario) -> None:
    node, orthanc = scenario.node, scenario.orthanc
    with node.engine() as engine, engine.connect() as conn:
        studies = dict(conn.execute(select(Study.study_instance_uid, Study.status)).all())
        callers = conn.execute(select(Association.calling_ae, Association.result)).all()
        results = conn.execute(select(AnalysisResult.outcome, AnalysisResult.findings)).all()
    assert studies == {scenario.study_uid: StudyStatus.ANALYSED}, "only the lumbar study reaches the node"
    assert callers and all(c == ("ORTHANC", "released") for c in callers), callers
    assert [outcome for outcome, _ in results] == ["analysed"]
    findings = results[0][1]
    assert findings["study_instance_uid"] == scenario.study_uid
    assert "L3" in {level["level"] for level in findings["levels"]}

    # Orthanc's side: a successful store job to the node, every MR series marked as sent
    jobs = orthanc.get("/jobs?expand")
    stores = [j for j in jobs if j["Type"] == "DicomModalityStore"]
    assert stores and all(j["State"] == "Success" for j in stores), json.dumps(jobs, indent=1)[:2000]
    assert {j["Content"]["RemoteAet"] for j in stores} == {node.ae_title}
    study_id = orthanc.study_id(scenario.study_uid)
    assert study_id is not None
    for series in orthanc.series_of(study_id):
        if series["MainDicomTags"].get("Modality") == "MR":
            marked = orthanc.get(f"/series/{series['ID']}/metadata?expand")
            assert marked.get("LumbarSentinelForwarded") == str(len(series["Instances"]))


def test_the_rule_leaves_other_body_parts_in_the_pacs(scenario: Scenario) -> None:
    orthanc = scenario.orthanc
    other_id = orthanc.study_id(scenario.other_study_uid)
    assert other_id is not None
    assert orthanc.get(f"/studies/{other_id}")["IsStable"] is True
    for series in orthanc.series_of(other_id):
        assert "LumbarSentinelForwarded" not in orthanc.get(f"/series/{series['ID']}/metadata?expand")


def _modalities(orthanc: OrthancProcess, study_id: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for series in orthanc.series_of(study_id):
        grouped.setdefault(series["MainDicomTags"].get("Modality", ""), []).append(series)
    return grouped


def _tracking_identifiers(items: Any) -> list[str]:
    """Every Tracking Identifier text in an SR content tree."""
    found: list[str] = []
    for item in items:
        name = item.get("ConceptNameCodeSequence")
        if name and (name[0].CodeValue, name[0].CodingSchemeDesignator) == TRACKING_IDENTIFIER:
            found.append(str(item.TextValue))
        found += _tracking_identifiers(item.get("ContentSequence", []))
    return found


def test_results_come_back_into_the_same_study(scenario: Scenario) -> None:
    if scenario.delivery is not None:
        pytest.skip(scenario.delivery)
    orthanc, node = scenario.orthanc, scenario.node
    study_id = orthanc.study_id(scenario.study_uid)
    assert study_id is not None

    def results_arrived() -> bool:
        found = _modalities(orthanc, study_id)
        return "SR" in found and "SEG" in found and bool(KEY_IMAGE_MODALITIES & found.keys())

    wait_until(results_arrived, "SR, SEG and key image in Orthanc's study", timeout=120)
    # once stable again, the rule must not send the study back to the node
    wait_until(lambda: orthanc.get(f"/studies/{study_id}")["IsStable"] is True, "the study stable again",
               timeout=60)
    found = _modalities(orthanc, study_id)
    assert len(found["SR"]) == len(found["SEG"]) == 1

    sr_instance = found["SR"][0]["Instances"][0]
    dataset = pydicom.dcmread(io.BytesIO(orthanc.instance_file(sr_instance)))
    report = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    assert report.StudyInstanceUID == scenario.study_uid
    with node.engine() as engine, engine.connect() as conn:
        findings = conn.scalar(select(AnalysisResult.findings))
        analyses = conn.scalar(select(func.count(AnalysisResult.id)))
    assert findings is not None
    identifiers = _tracking_identifiers(report.ContentSequence)
    levels = [level["level"] for level in findings["levels"]]
    assert sorted(set(identifiers) - {"Study"}) == sorted(levels)
    assert "Study" in identifiers
    assert analyses == 1, "the results sent back made Orthanc route the study to the node again"
    stores = [j for j in orthanc.get("/jobs?expand") if j["Type"] == "DicomModalityStore"]
    assert len(stores) == 1, "the rule sent the study to the node again"
