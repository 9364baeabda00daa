"""Issue 18 end to end: a running node (`lumbar-sentinel serve`) analyses a phantom study sent with
DCMTK storescu and delivers its SR, SEG and key image to a DCMTK storescp; a late series supersedes
the first result; a destination that is down turns the delivery into a dead letter that `resend`
delivers. On SQLite and on PostgreSQL.

The retry-then-succeed path through a serve process (destination comes back before the last attempt)
is tests/delivery/test_serve_delivery.py; here the results come from a real analysis.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session

from node.db.audit import Delivery, DeliveryAttempt, DeliveryStatus
from node.db.models import AnalysisResult
from tests.delivery.helpers import DEST_AE, OUR_AE, Storescp
from tests.helpers.node import CLI, NodeProcess, running_node
from tests.helpers.senders import storescu
from tests.queue.helpers import wait_until
from tests.results.conftest import (
    code_of,
    dciodvfy_report,
    evaluation_code,
    measurement_report,
    unexpected_warnings,
)
from tests.results.test_sr import LEVEL_NUMBERS, LEVEL_SIGNS, SITES, STATES, STUDY_SIGNS

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
KEY_IMAGE_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture (docs/conformance.md)
ANALYSIS_TIMEOUT = 600.0
PHANTOM = ["--seed", "11", "--lesion", "L3:focal:epidural", "--fracture", "L1:2:benign"]


def _phantom(out: Path, *extra: str) -> Path:
    made = subprocess.run([str(CLI), "phantom", str(out), *PHANTOM, *extra],
                          capture_output=True, text=True, timeout=600, check=False)
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _phantom(tmp_path_factory.mktemp("e2e") / "study")


@pytest.fixture(scope="module")
def late_series(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A post-contrast T1 of the same patient and study: the same phantom with --contrast, its
    extra series moved into the first study (the phantom draws its UIDs afresh on every run)."""
    other = _phantom(tmp_path_factory.mktemp("e2e_late") / "study", "--contrast")
    first = dcmread(next((phantom / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    out = tmp_path_factory.mktemp("late_series")
    paths = []
    series_uid = generate_uid()
    for path in sorted((other / "dicom" / "04_SAG_T1_TSE_POST_GD").rglob("*.dcm")):
        ds = dcmread(path)
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientName", "PatientID",
                        "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                        "AccessionNumber"):
            if keyword in first:
                setattr(ds, keyword, first.get(keyword))
        ds.SeriesInstanceUID = series_uid
        paths.append(out / path.name)
        ds.save_as(paths[-1])
    assert paths
    return paths


def _files(phantom: Path) -> list[Path]:
    return sorted(p for p in (phantom / "dicom").rglob("*") if p.is_file())


def _sections(tmp_path: Path, port: int, **retry: Any) -> dict[str, dict[str, Any]]:
    return {
        "storage": {"min_free_bytes": 0, "results": str(tmp_path / "results")},
        "study": {"quiet_period": 2, "completion_poll_interval": 0.2},
        "queue": {"workers": 1, "poll_interval": 0.1},
        "delivery": {"calling_ae_title": OUR_AE, "destinations": [
            {"name": "pacs", "ae_title": DEST_AE, "host": "127.0.0.1", "port": port}]},
        "delivery.retry": {"max_attempts": 10, "backoff_base": 0.2, "backoff_max": 2,
                           "backoff_jitter": 0, **retry},
    }


def _admin(node: NodeProcess, *args: str) -> Any:
    done = subprocess.run([str(CLI), "--config", str(node.config), *args, "--format", "json"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=node.workdir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _deliveries(node: NodeProcess) -> list[tuple[int, str]]:
    with node.engine() as engine, Session(engine) as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(Delivery.analysis_result_id, Delivery.status).order_by(Delivery.id)).all()]


def _received(storescp: Storescp) -> dict[str, list[Any]]:
    """SOP class UID -> the data sets storescp wrote."""
    found: dict[str, list[Any]] = {}
    for path in sorted(storescp.folder.iterdir()):
        ds = dcmread(path)
        found.setdefault(str(ds.SOPClassUID), []).append((path, ds))
    return found


def _check_sr_against_truth(sr: hd.sr.Comprehensive3DSR, truth: dict[str, Any], seg_uid: str) -> None:
    schemes = {item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence}
    assert "99LSENT" in schemes
    assert sr.StudyInstanceUID == truth["study_instance_uid"]
    report = measurement_report(sr)
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(groups)
    for name, group in groups.items():
        assert name is not None
        assert [code_of(s.value) for s in group.finding_sites] == [(SITES[name], "SCT")]
        assert group.referenced_segment is not None
        assert group.referenced_segment.referenced_sop_instance_uid == seg_uid
        evaluations = {q.name.value: q for q in group.get_qualitative_evaluations()}
        assert set(evaluations) == set(LEVEL_SIGNS), name
        assert {code_of(q.value)[1] for q in evaluations.values()} == {"SCT"}
        numbers = {m.name.value for m in group.get_measurements()}
        assert numbers <= set(LEVEL_NUMBERS), name
        if name.startswith("L"):  # heights and grade are measured on lumbar bodies (null, so absent, at S1)
            assert {"HA", "HM", "HP", "HLOSS", "GENANT", "LESFRAC"} <= numbers, name
    truth_levels = {lv["level"]: lv for lv in truth["levels"]}

    def state(level: str, code: str) -> str:
        return next(evaluation_code(q) for q in groups[level].get_qualitative_evaluations()
                    if q.name.value == code)

    def number(level: str, code: str) -> float:
        return next(float(m.value) for m in groups[level].get_measurements() if m.name.value == code)

    assert state("L3", "SUSPMAL") == STATES["present"]
    assert state("L1", "VCF") == STATES["present"]
    assert number("L1", "GENANT") == truth_levels["L1"]["genant_grade"] == 2
    normal = next(name for name, lv in truth_levels.items() if name in groups
                  and lv["suspicious_for_malignancy"] == "absent" and lv["compression_fracture"] == "absent")
    assert state(normal, "SUSPMAL") == STATES["absent"]
    assert state(normal, "VCF") == STATES["absent"]
    (study,) = report.get_image_measurement_groups()
    assert study.tracking_identifier == "Study"
    study_evaluations = {q.name.value: code_of(q.value) for q in study.get_qualitative_evaluations()}
    assert set(study_evaluations) == set(STUDY_SIGNS)
    assert study_evaluations["SUSPMAL"] == (STATES["present"], "SCT")
    (count,) = study.get_measurements()
    assert code_of(count.name) == ("NSUSP", "99LSENT")
    suspicious = [n for n, lv in truth_levels.items() if lv["suspicious_for_malignancy"] == "present"]
    assert count.value == len(suspicious) == 1
    (impression,) = hd.sr.utils.find_content_items(
        sr, name=hd.sr.CodedConcept("121073", "DCM", "Impression"), recursive=True)
    assert "L3" in impression.TextValue and "not a diagnosis" in impression.TextValue


def _valid(paths: Sequence[Path]) -> None:
    for path in paths:
        errors, warnings = dciodvfy_report(path)
        assert errors == [], (path, errors)
        assert unexpected_warnings(warnings) == [], (path, warnings)


def test_a_phantom_study_is_analysed_delivered_and_superseded_by_a_late_series(
        database_url: str, tmp_path: Path, phantom: Path, late_series: list[Path]) -> None:
    truth = json.loads((phantom / "truth.json").read_text())
    uid = truth["study_instance_uid"]
    storescp = Storescp(tmp_path / "received")
    storescp.start()
    try:
        with running_node(tmp_path / "node", database_url, _sections(tmp_path, storescp.port)) as node:
            sent = storescu(node, _files(phantom))
            assert sent.returncode == 0, sent.stderr
            wait_until(lambda: [s for _, s in _deliveries(node)] == [DeliveryStatus.DELIVERED],
                       "the first delivery", timeout=ANALYSIS_TIMEOUT)
            first = _received(storescp)
            assert sorted(first) == sorted([SR_CLASS, SEG_CLASS, KEY_IMAGE_CLASS])
            assert all(len(v) == 1 for v in first.values())
            _valid([path for items in first.values() for path, _ in items])
            (sr_path, _), = first[SR_CLASS]
            (_, seg), = first[SEG_CLASS]
            dump = subprocess.run(["dsrdump", str(sr_path)], capture_output=True, text=True, check=False)
            assert dump.returncode == 0 and dump.stderr.strip() == "", dump.stderr
            assert "Suspicious for malignancy" in dump.stdout
            first_sr = hd.sr.srread(sr_path)
            assert isinstance(first_sr, hd.sr.Comprehensive3DSR)
            assert "PredecessorDocumentsSequence" not in first_sr
            _check_sr_against_truth(first_sr, truth, str(seg.SOPInstanceUID))

            # a series arriving after the delivery: a second analysis, a second SR
            sent = storescu(node, late_series)
            assert sent.returncode == 0, sent.stderr
            wait_until(lambda: [s for _, s in _deliveries(node)] == [DeliveryStatus.DELIVERED] * 2,
                       "the second delivery", timeout=ANALYSIS_TIMEOUT)
            files = sorted(storescp.folder.iterdir())
            assert len(files) == 6  # each object sent once
            srs = [ds for ds in map(dcmread, files) if ds.SOPClassUID == SR_CLASS]
            (second_sr,) = [ds for ds in srs if ds.SOPInstanceUID != first_sr.SOPInstanceUID]
            (study_item,) = second_sr.PredecessorDocumentsSequence
            (series_item,) = study_item.ReferencedSeriesSequence
            (reference,) = series_item.ReferencedSOPSequence
            assert reference.ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
            _valid(files)

            with node.engine() as engine, Session(engine) as session:
                results = session.execute(select(AnalysisResult.id, AnalysisResult.superseded_by_id)
                                          .order_by(AnalysisResult.id)).all()
            assert [tuple(r) for r in results] == [(results[0][0], results[1][0]), (results[1][0], None)]

            studies = _admin(node, "studies")
            assert [s["study_instance_uid"] for s in studies] == [uid]
            assert studies[0]["suspicious"] == "present" and studies[0]["instances"] == (
                len(_files(phantom)) + len(late_series))
            detail = _admin(node, "study", uid)
            analyses = detail["analyses"]
            assert [(a["id"], a["superseded_by_id"]) for a in analyses] == [tuple(r) for r in results]
            assert {a["suspicious"] for a in analyses} == {"present"}
            l3 = [f for f in detail["findings"] if f["level"] == "L3"]
            assert [f["suspicious_for_malignancy"] for f in l3] == ["present", "present"]
            suspicious = _admin(node, "results", "--suspicious")
            assert [(r["study_instance_uid"], r["analysis_result_id"], r["suspicious_levels"])
                    for r in suspicious] == [(uid, results[1][0], "L3")]
            every = _admin(node, "results", "--suspicious", "--all-versions")
            assert sorted(r["analysis_result_id"] for r in every) == [r[0] for r in results]
    finally:
        storescp.stop()


def _attempt_times(node: NodeProcess) -> list[datetime]:
    with node.engine() as engine, Session(engine) as session:
        return list(session.scalars(select(DeliveryAttempt.started_at).order_by(DeliveryAttempt.attempt)))


def test_a_dead_letter_while_the_destination_is_down_is_delivered_by_resend(
        database_url: str, tmp_path: Path, phantom: Path) -> None:
    storescp = Storescp(tmp_path / "received")  # not listening yet: the destination is down
    sections = _sections(tmp_path, storescp.port, max_attempts=4, backoff_base=0.5, backoff_max=8)
    try:
        with running_node(tmp_path / "node", database_url, sections) as node:
            sent = storescu(node, _files(phantom))
            assert sent.returncode == 0, sent.stderr
            wait_until(lambda: [s for _, s in _deliveries(node)] == [DeliveryStatus.DEAD],
                       "the dead letter", timeout=ANALYSIS_TIMEOUT)
            times = _attempt_times(node)
            assert len(times) == 4
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert gaps == sorted(gaps) and gaps[-1] > gaps[0], gaps
            # the node still receives and analyses: the study was analysed while nothing listened
            detail = _admin(node, "study", str(json.loads((phantom / "truth.json").read_text())
                                              ["study_instance_uid"]))
            assert [a["outcome"] for a in detail["analyses"]] == ["analysed"]

            storescp.start()
            _admin(node, "resend", "--dead")
            wait_until(lambda: [s for _, s in _deliveries(node)] == [DeliveryStatus.DELIVERED],
                       "the resent delivery")
            assert len(list(storescp.folder.iterdir())) == 3
            # a further resend without --again sends nothing already acknowledged
            _admin(node, "resend", "--dead")
            assert storescp.store_requests() == 3
    finally:
        storescp.stop()
