"""The layers hold: every import of every module is checked against what its layer may use.

yang/, common/  ->  agents/, km/, controller/ (never each other)  ->  lab/  ->  bench/, tests/
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("yang", "common", "agents", "km", "controller", "lab", "bench", "tests")
PARTS = ("agents", "km", "controller")
# What each top-level package may not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "yang": frozenset({"agents", "km", "controller", "lab", "bench", "tests"}),
    "common": frozenset({"agents", "km", "controller", "lab", "bench", "tests"}),
    **{
        part: frozenset({"lab", "bench", "tests", *(other for other in PARTS if other != part)})
        for part in PARTS
    },
    "lab": frozenset({"bench", "tests"}),
    "bench": frozenset(),
    "tests": frozenset(),
}


def imported_packages(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in the file, also inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package
                yield node.lineno, package
            elif node.module:
                yield node.lineno, node.module.split(".")[0]


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ".venv" not in path.parts:
                found.append((package, path))
    return found


def violations(package: str, path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for line, target in imported_packages(path, package)
        if target in FORBIDDEN[package]
    ]


def test_no_module_imports_above_its_layer() -> None:
    problems = [problem for package, path in modules() for problem in violations(package, path)]
    assert problems == []


def test_every_package_is_scanned() -> None:
    scanned = {package for package, _ in modules()}
    assert scanned == set(PACKAGES)
    assert len(modules()) > 150


@pytest.mark.parametrize(
    ("package", "source", "bad"),
    [
        ("km", "from lab.plan import LabPlan\n", True),
        ("km", "def f():\n    import lab.plan\n", True),
        ("agents", "from km.config import KmConfig\n", True),
        ("controller", "from tests.harness import agents\n", True),
        ("common", "import controller.api\n", True),
        ("yang", "from agents import node\n", True),
        ("lab", "from tests.harness.agents import make_test_plan\n", True),
        ("km", "from common.config import Address\nfrom . import sibling\n", False),
        ("lab", "from km.config import KmConfig\n", False),
        ("bench", "from tests.harness.relay import make_plan\n", False),
    ],
)
def test_the_check_itself_catches_a_forbidden_import(
    tmp_path: Path, package: str, source: str, bad: bool
) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    found = [
        target for _, target in imported_packages(path, package) if target in FORBIDDEN[package]
    ]
    assert bool(found) is bad
