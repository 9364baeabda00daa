"""docker-compose.yml and the Dockerfile, checked without Docker (which this machine lacks).

The compose file must satisfy the Compose Specification's JSON schema
(vendored in compose_spec/), and everything it asks of the node must exist:
each command and health check parses with the real CLI parser, each
LSENT_SECTION__FIELD names a setting, and the settings each container ends
up with (its mounted file plus its environment) validate. The Orthanc
configuration must point at the receiver as the node is configured.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from node.cli import build_parser, parse_arguments
from node.settings import Settings, load_settings
from tests.ops.deployment import (
    REPO,
    SCHEMA_FILE,
    Stage,
    dockerfile_stages,
    entrypoint,
    environment,
    load_compose,
    mounts,
)

NODE_SERVICES = ("migrate", "receiver", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


def test_the_compose_file_satisfies_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _schema_errors(compose) == []


@pytest.mark.parametrize("path, value", [
    (("services", "worker", "deploy", "replicas"), "two"),
    (("services", "receiver", "healthcheck", "retries"), "three"),
    (("services", "receiver", "depends_on", "migrate", "condition"), None),
    (("services", "postgres", "restartt"), "always"),
])
def test_the_schema_check_catches_mistakes(
    compose: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    broken = copy.deepcopy(compose)
    target = broken
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert _schema_errors(broken) != []


def test_the_services_the_guide_describes(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "migrate", "receiver", "worker", "orthanc"}
    assert compose["services"]["worker"]["deploy"]["replicas"] >= 2
    for name, service in compose["services"].items():
        if name != "migrate":
            assert "healthcheck" in service, f"{name} has no health check"
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for target, source in mounts(service).items():
            if source.startswith("."):
                assert (REPO / source).is_file(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source} at {target}"


def test_every_node_command_and_health_check_parses_with_the_cli(
    compose: dict[str, Any], final_stage: Stage
) -> None:
    program, *options = entrypoint(final_stage)
    assert program == "lumbar-sentinel"
    for name in NODE_SERVICES:
        service = compose["services"][name]
        args = parse_arguments([*options, *service["command"]])
        assert args.config == Path("/etc/lumbar-sentinel/node.toml")
        check = service.get("healthcheck", {}).get("test")
        if check is not None:
            assert check[:2] == ["CMD", "lumbar-sentinel"]
            assert parse_arguments(check[2:]).command == "health"
    roles = {name: compose["services"][name]["command"][0] for name in NODE_SERVICES}
    assert roles == {"migrate": "db", "receiver": "serve", "worker": "worker"}


def test_a_wrong_command_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serv"])


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    config = mounts(service)["/etc/lumbar-sentinel/node.toml"]
    for key, value in environment(service).items():
        section, _, name = key.removeprefix("LSENT_").lower().partition("__")
        assert key.startswith("LSENT_") and name, f"{key} is not LSENT_<SECTION>__<SETTING>"
        model = Settings.model_fields[section].annotation if section in Settings.model_fields else None
        assert isinstance(model, type) and issubclass(model, BaseModel), f"{key}: no section {section!r}"
        assert name in model.model_fields, f"{key}: section {section!r} has no setting {name!r}"
        monkeypatch.setenv(key, value)
    return load_settings(REPO / config)


def test_each_containers_settings_exist_and_validate(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {}
    for name in NODE_SERVICES:
        with monkeypatch.context() as env:
            settings[name] = _settings_of(compose["services"][name], env)
    receiver, worker = settings["receiver"], settings["worker"]
    assert receiver.queue.workers == 0
    assert worker.queue.workers >= 1
    assert receiver.database.url == worker.database.url
    assert receiver.database.url.startswith("postgresql+psycopg://lsent:")
    for role in (receiver, worker):
        assert role.metrics.enabled and role.metrics.host == "0.0.0.0"
        assert role.storage.root == Path("/data/storage")
    volumes = {name: mounts(compose["services"][name]) for name in ("receiver", "worker")}
    for folder in (receiver.storage.root, receiver.storage.results):
        assert volumes["receiver"][str(folder)] == volumes["worker"][str(folder)]
    assert (worker.storage.root, worker.storage.results) == (receiver.storage.root, receiver.storage.results)
    published = {port.rsplit(":", 1)[-1] for port in compose["services"]["receiver"]["ports"]}
    assert published == {str(receiver.dicom.port), str(receiver.metrics.port)}


def test_an_unknown_setting_in_the_environment_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    service = {"volumes": ["./config/compose/node.toml:/etc/lumbar-sentinel/node.toml:ro"],
               "environment": {"LSENT_QUEUE__WORKER": "0"}}
    with pytest.raises(AssertionError, match="has no setting 'worker'"):
        _settings_of(service, monkeypatch)


def test_orthanc_routes_to_the_receiver_and_may_call_it(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    orthanc_service = compose["services"]["orthanc"]
    files = mounts(orthanc_service)
    orthanc = json.loads((REPO / files["/etc/orthanc/lumbar-sentinel.json"]).read_text(encoding="utf-8"))
    node = _settings_of(compose["services"]["receiver"], monkeypatch)
    sentinel = orthanc["DicomModalities"]["lumbar-sentinel"]
    assert (sentinel["AET"], sentinel["Host"], sentinel["Port"]) == (node.dicom.ae_title, "receiver",
                                                                      node.dicom.port)
    assert orthanc["DicomAet"] in {caller.ae_title for caller in node.dicom.allowed_callers}
    for script in orthanc["LuaScripts"]:
        assert script in files, f"Lua script {script} is not mounted into the orthanc container"
    lua = (REPO / files[orthanc["LuaScripts"][0]]).read_text(encoding="utf-8")
    assert "function OnStableStudy(" in lua
    assert "'lumbar-sentinel'" in lua
    assert "LumbarSentinelForwarded" in orthanc["UserMetadata"]


def test_the_image_is_built_in_stages_without_torch(final_stage: Stage) -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert "slim" in final_stage.base
    final_runs = " ".join(final_stage.arguments("RUN"))
    for tool in ("gcc", "build-essential", "apt-get install", "pip wheel"):
        assert tool not in final_runs, f"the final image runs {tool!r}"
    assert "--no-index" in final_runs
    # CPU-only inference runs in ONNX Runtime: no PyTorch (or its CUDA libraries) in the image
    assert "torch" not in " ".join(" ".join(stage.arguments("RUN")) for stage in stages)
    assert final_stage.arguments("USER") and final_stage.arguments("USER")[-1] != "root"


def test_the_operations_guide_covers_every_service_and_port(compose: dict[str, Any]) -> None:
    guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for name, service in compose["services"].items():
        assert f"### `{name}`" in guide, f"docs/operations.md has no section for {name}"
        for port in service.get("ports", []):
            assert f"`{port.rsplit(':', 1)[-1]}`" in guide, f"docs/operations.md does not give port {port}"
    for topic in ("## TLS", "## Backups", "## Upgrades and migrations", "## Adding workers on other hosts",
                  "## What to watch", "db upgrade", "pg_dump", "/healthz", "grafana-dashboard.json"):
        assert topic in guide, f"docs/operations.md lacks {topic!r}"


def test_incoming_files_land_on_the_storage_volume(compose: dict[str, Any], final_stage: Stage) -> None:
    # the container's temporary files go to the store's incoming folder, on the storage volume,
    # where the receiver streams each data set: none lands in the container's own /tmp
    env = dict(arg.split("=", 1) for arg in final_stage.arguments("ENV") if "=" in arg)
    incoming = PurePosixPath(env["TMPDIR"])
    mounts = [PurePosixPath(v.split(":")[1]) for v in compose["services"]["receiver"]["volumes"]
              if not v.startswith((".", "/"))]
    storage = PurePosixPath(tomllib.loads((REPO / "config" / "compose" / "node.toml").read_text())
                            ["storage"]["root"])
    assert storage in mounts and incoming.is_relative_to(storage)
    assert incoming.name.startswith(".")  # not a study folder
    runs = " ".join(final_stage.arguments("RUN"))
    assert f"mkdir -p {incoming}" in runs and f"lsent:lsent {storage} {incoming}" in runs
