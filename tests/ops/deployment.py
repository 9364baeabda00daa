"""Reading the deployment files as Docker would: the Dockerfile's stages and the compose file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SCHEMA_FILE = Path(__file__).resolve().parent / "compose_spec" / "compose-spec.json"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The stages in order, each with its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages and "=" in rest:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            stages.append(Stage(base, words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((instruction, rest.strip()))
    return stages


def entrypoint(stage: Stage) -> list[str]:
    [value] = stage.arguments("ENTRYPOINT")[-1:]
    result: list[str] = json.loads(value)
    return result


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with the defaults (the tests set no variable)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("default") is None:
            raise AssertionError(f"{match.group(0)} has no default: the file needs a variable set")
        return match.group("default")

    return _VARIABLE.sub(replace, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value)) for key, value in raw.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (host path or volume name) of the short-syntax volumes."""
    result: dict[str, str] = {}
    for item in service.get("volumes", []):
        source, target = item.split(":")[:2]
        result[target] = source
    return result
