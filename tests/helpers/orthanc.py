"""A real Orthanc PACS under test, configured from the reference set-up in ``config/orthanc/``.

The reference ``orthanc.json`` is rendered with free ports, a temporary storage
folder, a short StableAge and the node under test as the ``lumbar-sentinel``
modality; ``Orthanc CONFIG.json`` then runs as a subprocess (the Debian
package's own service is not used). The REST API is spoken with urllib.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.helpers.node import free_port

REFERENCE_DIR = REPO / "config" / "orthanc"
REFERENCE_CONFIG = REFERENCE_DIR / "orthanc.json"
FORWARD_SCRIPT = REFERENCE_DIR / "forward-lumbar-mr.lua"
NODE_MODALITY = "lumbar-sentinel"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def orthanc_binary() -> str | None:
    """The Orthanc executable (Debian package ``orthanc``, in /usr/sbin), or None."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")


class OrthancError(RuntimeError):
    """A REST call failed; the message has the method, URI, status and Orthanc's answer."""


@dataclass
class OrthancProcess:
    workdir: Path
    config_path: Path
    http_port: int
    dicom_port: int
    ae_title: str
    user: str
    password: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        binary = orthanc_binary()
        if binary is None:
            raise RuntimeError("Orthanc is not installed (Debian package orthanc)")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([binary, str(self.config_path)], cwd=self.workdir,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                self.get("/system")
                return
            except (OrthancError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc's REST API did not answer in {START_TIMEOUT} s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, uri: str, body: bytes | None = None,
                content_type: str = "application/json") -> bytes:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + uri, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                data: bytes = answer.read()
                return data
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"{method} {uri}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc

    def get(self, uri: str) -> Any:
        return json.loads(self.request("GET", uri))

    def post(self, uri: str, payload: Any) -> Any:
        return json.loads(self.request("POST", uri, json.dumps(payload).encode()))

    def upload(self, path: Path) -> dict[str, Any]:
        """``POST /instances`` of one DICOM file; Orthanc's answer (ID, ParentStudy, Status...)."""
        answer: dict[str, Any] = json.loads(
            self.request("POST", "/instances", path.read_bytes(), "application/dicom"))
        return answer

    def study_id(self, study_instance_uid: str) -> str | None:
        """Orthanc's identifier of a study, or None when it does not hold it."""
        answer = json.loads(self.request("POST", "/tools/lookup", study_instance_uid.encode(), "text/plain"))
        for item in answer:
            if item.get("Type") == "Study":
                return str(item["ID"])
        return None

    def series_of(self, study_id: str) -> list[dict[str, Any]]:
        series: list[dict[str, Any]] = self.get(f"/studies/{study_id}/series")
        return series

    def instance_file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")


def render_config(workdir: Path, *, node_ae_title: str, node_port: int, stable_age: int = 2,
                  node_host: str = "127.0.0.1", dicom_port: int | None = None) -> OrthancProcess:
    """The reference configuration with this test's ports, folders and node; not started.

    Only what differs between a hospital and a test changes: ports, paths,
    StableAge, the node's address and AE title, and a throw-away password.
    """
    if stable_age < 1:
        raise ValueError(f"stable_age must be at least 1 s, got {stable_age}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = json.loads(REFERENCE_CONFIG.read_text(encoding="utf-8"))
    if NODE_MODALITY not in config["DicomModalities"]:
        raise ValueError(f"{REFERENCE_CONFIG} declares no {NODE_MODALITY!r} modality")
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    http_port = free_port()
    dicom_port = dicom_port or free_port()
    user, password = "admin", "test-" + base64.b32encode(http_port.to_bytes(4, "big")).decode().strip("=")
    config.update({
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "TemporaryDirectory": str(workdir),
        "LuaScripts": [str(FORWARD_SCRIPT)],
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "RegisteredUsers": {user: password},
        "StableAge": stable_age,
        "SaveJobs": False,
    })
    config["DicomModalities"][NODE_MODALITY].update(
        {"AET": node_ae_title, "Host": node_host, "Port": node_port})
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return OrthancProcess(workdir=workdir, config_path=config_path, http_port=http_port,
                          dicom_port=dicom_port, ae_title=config["DicomAet"], user=user,
                          password=password, log_path=workdir / "orthanc.log")


@contextmanager
def running_orthanc(workdir: Path, **kwargs: Any) -> Iterator[OrthancProcess]:
    """Render the configuration, start Orthanc, yield it, stop it."""
    orthanc = render_config(workdir, **kwargs)
    orthanc.start()
    try:
        yield orthanc
    finally:
        orthanc.stop()
