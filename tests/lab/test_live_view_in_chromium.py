"""The live view in a real headless Chromium against a running triangle: the page shows the
three nodes and links, a cut turns the link red within seconds, an association shows its
path, and the page reconnects by itself when the controller restarts."""

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

from tests.harness.browser import Browser, chromium_executable

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.timeout(600),  # a twin, a browser and a controller restart on a busy machine
    pytest.mark.skipif(chromium_executable() is None, reason="needs chromium (make setup)"),
]

LINKS = "[...document.querySelectorAll('.link')].map(l => l.dataset.ends + '=' + l.dataset.status)"
NODES = "[...document.querySelectorAll('.node')].map(n => n.dataset.name)"
CONN = "document.getElementById('conn').dataset.state"
FRAMES = "Number(document.body.dataset.frames)"
ROWS = "[...document.querySelectorAll('#intents tr')].map(r => r.dataset.state + ':' + r.cells[2].textContent)"
FEED = "[...document.querySelectorAll('#feed li')].map(li => li.textContent)"


def qkdsdn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="160"),
    )


def enc_keys(state: Path, endpoints: dict[str, object]) -> None:
    """app1 at qnode1 asks for a key for app2 at qnode3: the controller installs a path."""
    nodes = endpoints["nodes"]
    assert isinstance(nodes, dict)
    km1 = nodes["qnode1"]["km"]["etsi014_url"]
    context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
    context.load_cert_chain(state / "pki" / "sae-app1.pem", state / "pki" / "sae-app1.key")
    with httpx.Client(verify=context, timeout=60.0) as app1:
        reply = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 1, "size": 256})
    assert reply.status_code == 200, reply.text


def test_the_live_view_shows_the_triangle_a_cut_and_reconnects_after_a_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    up = qkdsdn("lab", "up", "triangle", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        endpoints = json.loads((state / "endpoints.json").read_text())
        url = endpoints["controller"]["url"]
        viewer = (state / "secrets" / "controller-token-viewer").read_text().strip()
        assert httpx.get(f"{url}/live", timeout=10).status_code == 401
        assert httpx.get(f"{url}/live/unknown?token={viewer}", timeout=10).status_code == 404
        with Browser() as browser:
            browser.open(f"{url}/live?token={viewer}")
            nodes = browser.wait_for(NODES, lambda v: v and len(v) == 3, "three nodes", 30)
            assert sorted(nodes) == ["qnode1", "qnode2", "qnode3"]
            links = browser.wait_for(LINKS, lambda v: v and len(v) == 3, "three links", 10)
            assert sorted(links) == [
                "qnode1 qnode2=ACTIVE",
                "qnode1 qnode3=ACTIVE",
                "qnode2 qnode3=ACTIVE",
            ]
            assert browser.evaluate(CONN) == "open"
            # Live: frames keep coming (at least one a second) with no reload.
            first = browser.evaluate(FRAMES)
            browser.wait_for(FRAMES, lambda v: v >= first + 2, "two more frames", 5)

            enc_keys(state, endpoints)
            browser.wait_for(
                ROWS, lambda v: v == ["INSTALLED:qnode1 › qnode3"], "the direct association", 10
            )

            cut = qkdsdn("lab", "fault", "cut", "qnode1-qnode3", "--state-dir", str(state))
            assert cut.returncode == 0, cut.stderr
            started = time.monotonic()
            browser.wait_for(
                LINKS, lambda v: v and "qnode1 qnode3=OFF" in v, "the cut link turning OFF", 5
            )
            seen_after = time.monotonic() - started
            colour = browser.evaluate(
                "document.querySelector('.link[data-ends=\"qnode1 qnode3\"]').getAttribute('stroke')"
            )
            assert colour == "#d50000"
            # The controller re-routes the association through qnode2, and the page says so.
            browser.wait_for(
                ROWS,
                lambda v: v == ["INSTALLED:qnode1 › qnode2 › qnode3"],
                "the re-routed association",
                15,
            )
            feed = browser.wait_for(
                FEED, lambda v: v and any("link down qnode1–qnode3" in x for x in v), "alarm", 5
            )
            assert any("intent rerouted app1>app2" in x for x in feed), feed
            browser.evaluate("document.querySelector('#intents tr').click()")
            browser.screenshot(tmp_path / "live-view.png")
            assert (tmp_path / "live-view.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            shots = os.environ.get("QKDSDN_SCREENSHOT_DIR")
            if shots:
                (Path(shots) / "live-view.png").write_bytes(
                    (tmp_path / "live-view.png").read_bytes()
                )

            restart = qkdsdn("lab", "restart", "controller", "--state-dir", str(state))
            assert restart.returncode == 0, restart.stdout + restart.stderr
            browser.wait_for(CONN, lambda v: v == "open", "the page to reconnect", 30)
            frames = browser.evaluate(FRAMES)
            browser.wait_for(FRAMES, lambda v: v >= frames + 2, "frames after the restart", 10)
            links = browser.wait_for(
                LINKS, lambda v: v and "qnode1 qnode3=OFF" in v, "the cut link after restart", 20
            )
            assert len(links) == 3
        print(f"cut seen in the page {seen_after:.2f} s after `lab fault cut` returned")
    finally:
        down = qkdsdn("lab", "down", "--state-dir", str(state))
        assert down.returncode == 0, down.stdout + down.stderr
