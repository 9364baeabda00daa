"""The reference Orthanc routing rule (config/orthanc/) with a real Orthanc and a real node.

Orthanc (Debian package) runs config/orthanc/orthanc.json and
forward-lumbar.lua as shipped, with only ports, folders, the node's address
and a short StableAge changed. A lumbar MR study uploaded over Orthanc's REST
API reaches the node; the SR that comes back into the same study, and a
brain MR study, do not; a lumbar series added later is sent alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import NodeProcess, free_port, running_node
from tests.helpers.rows import read_rows
from tests.ops.deployment import REPO
from tests.ops.scrape import samples, value
from tests.queue.helpers import wait_until

CONFIG = REPO / "config" / "orthanc"


@contextmanager
def orthanc(folder: Path, node: NodeProcess) -> Iterator[int]:
    """Orthanc on the reference configuration, routing to ``node``; yields its HTTP port."""
    executable = shutil.which("Orthanc")
    if executable is None:
        pytest.fail("Orthanc is not installed (scripts/ensure-system-deps.sh installs it)")
    config: dict[str, Any] = json.loads((CONFIG / "orthanc.json").read_text(encoding="utf-8"))
    http_port = free_port()
    config.update({
        "HttpPort": http_port, "DicomPort": free_port(),
        "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "StableAge": 1,
        "LuaScripts": [str(CONFIG / "forward-lumbar.lua")], "Plugins": [],
    })
    config["DicomModalities"]["sentinel"].update(
        {"AET": node.ae_title, "Host": "127.0.0.1", "Port": node.port})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([executable, str(folder / "orthanc.json")], cwd=folder, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(http_port) or process.poll() is not None, "Orthanc to start")
        assert process.poll() is None, (folder / "orthanc.log").read_text(errors="replace")
        yield http_port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=2):
            return True
    except OSError:
        return False


def _rest(port: int, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _upload(port: int, datasets: list[Dataset], folder: Path) -> str:
    """POST each data set to /instances; the Orthanc id of their study."""
    folder.mkdir(parents=True, exist_ok=True)
    answer: dict[str, str] = {}
    for index, dataset in enumerate(datasets):
        path = folder / f"{index}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        answer = _rest(port, "/instances", path.read_bytes())
    return answer["ParentStudy"]


def _series(uids: StudyUIDs, index: int, count: int, **changes: str) -> list[Dataset]:
    datasets = [mr_instance(uids.study, uids.series[index], n, series_number=index + 1)
                for n in range(1, count + 1)]
    for dataset in datasets:
        for keyword, change in changes.items():
            setattr(dataset, keyword, change)
    return datasets


def test_lumbar_mr_series_are_forwarded_once_and_results_never(tmp_path: Path) -> None:
    lumbar, brain = StudyUIDs.new(3), StudyUIDs.new(1)
    metrics_port = free_port()
    sections: dict[str, dict[str, Any]] = {"dicom": {"allowed_callers": [{"ae_title": "ORTHANC"}]},
                "metrics": {"enabled": True, "port": metrics_port}}
    with running_node(tmp_path / "node", f"sqlite:///{tmp_path / 'node.db'}", sections) as node, \
            node.engine() as engine, orthanc(tmp_path / "orthanc", node) as port:

        def stored() -> int:
            return len(read_rows(engine).instances)

        study = _upload(port, _series(lumbar, 0, 3) + _series(lumbar, 1, 2), tmp_path / "first")
        wait_until(lambda: stored() == 5, "the lumbar study at the node")

        report = _series(lumbar, 0, 1, Modality="SR", SeriesInstanceUID=generate_uid(),
                         SOPInstanceUID=generate_uid())
        _upload(port, report, tmp_path / "sr")
        head = _upload(port, _series(brain, 0, 2, BodyPartExamined="HEAD", StudyDescription="MR BRAIN"),
                       tmp_path / "brain")
        wait_until(lambda: all(_rest(port, f"/studies/{key}")["IsStable"] for key in (study, head)),
                   "Orthanc to see both studies stable")
        # Changes are handled in order: once this later series is at the node, the SR's and the
        # brain study's turns have passed.
        _upload(port, _series(lumbar, 2, 2), tmp_path / "late")
        wait_until(lambda: stored() >= 7, "the late lumbar series at the node")
        rows = read_rows(engine)
        counted = samples(metrics_port)
    # the node refuses a non-MR instance, so it must not even have been offered the SR
    assert not any(name == "lsent_instances_rejected_total" for name, _ in counted)
    assert value(counted, "lsent_instances_received_total", outcome="stored") == 7
    assert value(counted, "lsent_instances_received_total", outcome="duplicate") == 0  # each series sent once
    assert len(rows.instances) == 7
    assert [study.study_instance_uid for study in rows.studies] == [lumbar.study]
    assert sorted(series.series_instance_uid for series in rows.series) == sorted(lumbar.series)
    assert {series.modality for series in rows.series} == {"MR"}
    assert all(association.calling_ae == "ORTHANC" for association in rows.associations)
