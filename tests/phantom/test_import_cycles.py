"""The phantom package has no import cycle, counting every import statement.

Imports inside functions and under ``TYPE_CHECKING`` count too: they hide a
circle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

import phantom

PACKAGE_DIR = Path(phantom.__file__).resolve().parent


def module_imports(package_dir: Path) -> dict[str, set[str]]:
    """Each module of the package (``pkg.mod``) -> the package's modules it imports anywhere."""
    package = package_dir.name
    modules = {f"{package}.{path.stem}": path for path in package_dir.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.add(node.module)
                # `from pkg import mod` imports the module pkg.mod
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                base = f"{package}.{node.module}" if node.module else package
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if (cycle := visit(module)) is not None:
            return cycle
    return None


def test_phantom_has_no_import_cycle() -> None:
    graph = module_imports(PACKAGE_DIR)
    assert len(graph) > 10
    assert "phantom.enhanced" in graph["phantom.writer"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        (  # a TYPE_CHECKING import closing the circle, as anatomy <-> tissues once did
            {"a.py": "from pkg.b import f\n",
             "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"},
            ["pkg.a", "pkg.b", "pkg.a"],
        ),
        (  # a function-level import, as writer <-> enhanced once did
            {"a.py": "def g():\n    from pkg import b\n",
             "b.py": "from . import c\n", "c.py": "import pkg.a\n"},
            ["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
        ),
        ({"a.py": "from pkg.b import f\n", "b.py": "import os\n"}, None),
    ],
)
def test_the_check_sees_hidden_circles(
    tmp_path: Path, files: dict[str, str], cycle: list[str] | None
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    assert find_cycle(module_imports(package)) == cycle
