"""lab/export/Containerfile: the one image installs every package the project ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_copies_every_shipped_package_and_runs_qkdsdn() -> None:
    text = (ROOT / "lab" / "export" / "Containerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", text, re.MULTILINE))
    assert copied == shipped
    assert "COPY pyproject.toml README.md ./" in text
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE)[-1].startswith("python:3.11-slim")
    assert "libyang2-dev" in text  # the libyang binding builds against it (Makefile SYSPKG too)
    assert "libyang2-dev" in (ROOT / "Makefile").read_text()
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"install .*\blibyang2 iproute2\b", runtime)  # `ip` for containerlab's exec
    assert project["project"]["scripts"]["qkdsdn"] == "lab.cli:main"
    assert 'ENTRYPOINT ["qkdsdn"]' in text
    assert re.search(r"^USER 10001$", text, re.MULTILINE)  # lab.export.kubernetes.RUN_AS
