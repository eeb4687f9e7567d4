"""`qkdsdn lab check` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import main

GOOD = """\
name: pair
defaults: {preset: commercial}
nodes: {alpha: {location: "[lab] bench 1"}, beta: {}}
links:
  - {between: [alpha, beta], length_km: 50}
  - {between: [beta, gamma]}
apps: {a1: alpha, b1: beta}
"""


def test_check_good_file_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pair.yaml"
    path.write_text(GOOD.replace("  - {between: [beta, gamma]}\n", ""))
    assert main(["lab", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pair" in out and "2 nodes, 1 links, 2 applications" in out
    assert "[lab] bench 1" in out  # user text is shown as written, not as markup
    assert "alpha–beta" in out and "commercial" in out and "50 km" in out
    assert "12.2 kbit/s" in out  # the model's rate for this link
    assert "2.1%" in out


def test_check_bad_file_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pair.yaml"
    path.write_text(GOOD.replace("preset: commercial", "preset: comercial"))
    assert main(["lab", "check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "pair.yaml:2: defaults.preset: unknown preset 'comercial' (did you mean 'commercial'?); "
        "known: commercial, field, high-rate",
        "pair.yaml:6: links[1].between: unknown node 'gamma'",
        "2 problems",
    ]


def test_check_defaults_to_the_triangle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check"]) == 0
    out = capsys.readouterr().out
    assert "triangle" in out and "qnode1–qnode2" in out and "kbit/s" in out


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml: (file): cannot read" in capsys.readouterr().out


def test_check_output_into_a_pipe_is_not_folded_on_a_long_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / ("long-folder-name-" * 8)
    folder.mkdir()
    path = folder / "pair.yaml"
    path.write_text(GOOD.replace("  - {between: [beta, gamma]}\n", ""))
    assert main(["lab", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out or "2 nodes, 1 links, 2 applications" in out
    assert all(len(line) <= 400 for line in out.splitlines())
    assert "2 nodes, 1 links, 2 applications" in out


def test_check_refuses_applications_named_like_a_node_or_a_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pair.yaml"
    apps = "apps: {Alpha: alpha, controller: beta, km-beta: beta, a1: alpha, b1: beta}\n"
    path.write_text(
        GOOD.replace("  - {between: [beta, gamma]}\n", "").replace(
            "apps: {a1: alpha, b1: beta}\n", apps
        )
    )
    assert main(["lab", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "apps.Alpha: application 'Alpha' is named like node 'alpha'" in out
    assert "apps.controller: application 'controller' takes a name reserved" in out
    assert "apps.km-beta: application 'km-beta' takes a name reserved" in out
    assert "3 problems" in out
