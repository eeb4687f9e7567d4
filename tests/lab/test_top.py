"""`qkdsdn top --once` against a running triangle: the links by name, the association the
first key request installed with its path and (once the KM reported it) its consumption,
and a clear line once the controller is down."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDTH = "200"

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


def qkdsdn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="80"),  # --width, not the terminal, decides
    )


def top_once(state: Path) -> subprocess.CompletedProcess[str]:
    return qkdsdn("top", "--state-dir", str(state), "--once", "--width", WIDTH, timeout=60)


def row_of(text: str, needle: str) -> str:
    return next((line for line in text.splitlines() if needle in line), "")


def test_top_once_shows_the_triangles_links_and_the_association(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = qkdsdn("lab", "up", "triangle", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        first = top_once(state)
        assert first.returncode == 0, first.stdout + first.stderr
        for link in ("qnode1–qnode2", "qnode1–qnode3", "qnode2–qnode3"):
            assert "ACTIVE" in row_of(first.stdout, link), first.stdout
        assert max(len(line) for line in first.stdout.splitlines()) <= int(WIDTH)

        endpoints = json.loads((state / "endpoints.json").read_text())
        km1 = endpoints["nodes"]["qnode1"]["km"]["etsi014_url"]
        context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
        context.load_cert_chain(state / "pki" / "sae-app1.pem", state / "pki" / "sae-app1.key")
        with httpx.Client(verify=context, timeout=60.0) as app1:
            reply = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 2, "size": 256})
        assert reply.status_code == 200, reply.text

        # The association with its path; its consumption once the KM's report reached the
        # agent and the controller's poll (every 5 s in the lab) read it: 2 keys of 256 bits.
        deadline = time.monotonic() + 60
        row = ""
        while time.monotonic() < deadline:
            frame = top_once(state)
            row = row_of(frame.stdout, "app1>app2")
            if "512 bit" in row:
                break
            time.sleep(1.0)
        assert "INSTALLED" in row and "qnode1 > qnode3" in row, row
        assert "512 bit" in row, row
        assert "intent installed app1>app2" in frame.stdout

        down = qkdsdn("lab", "down", "--state-dir", str(state))
        assert down.returncode == 0, down.stdout + down.stderr
        gone = top_once(state)  # the twin is down: top says so instead of failing
        assert gone.returncode == 1 and "controller unreachable" in gone.stdout, gone.stdout
    finally:
        qkdsdn("lab", "down", "--state-dir", str(state))  # stops nothing when already down
