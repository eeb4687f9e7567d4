"""A twin whose key managers' files give no peer relay address still relays (on 127.0.0.1)."""

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
import yaml

from lab.launcher import is_ours, recorded_processes

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab


def qkdsdn(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="160", QKDSDN_LAB_PEER_RELAYS="learn"),
    )


def _client(state: Path, sae: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
    context.load_cert_chain(state / "pki" / f"sae-{sae}.pem", state / "pki" / f"sae-{sae}.key")
    return httpx.Client(verify=context, timeout=30.0)


def test_a_twin_without_peer_relay_addresses_in_its_km_files_relays(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = qkdsdn(
        "lab", "up", "triangle", "--state-dir", str(state),
        "--force-path", "app1>app2=qnode1,qnode2,qnode3",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for node in ("qnode1", "qnode2", "qnode3"):
            km_file = yaml.safe_load((state / "config" / f"km-{node}.yaml").read_text())
            assert km_file["peers"] and all("relay" not in p for p in km_file["peers"])
        nodes = json.loads((state / "endpoints.json").read_text())["nodes"]
        km1, km3 = nodes["qnode1"]["km"]["etsi014_url"], nodes["qnode3"]["km"]["etsi014_url"]
        with _client(state, "app1") as app1, _client(state, "app2") as app2:
            # The first request installs the path; with it the KMs learn each other's address
            # and synchronise the links: refusals (503) meanwhile, as after a restart; bounded.
            deadline = time.monotonic() + 60.0
            while True:
                enc = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 2})
                if enc.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            for attempt in range(3):  # then three in a row succeed
                if attempt:
                    enc = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 2})
                assert enc.status_code == 200, enc.text
                keys = enc.json()["keys"]
                dec = app2.post(
                    f"{km3}/api/v1/keys/app1/dec_keys",
                    json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
                )
                assert dec.status_code == 200, dec.text
                assert [k["key"] for k in dec.json()["keys"]] == [k["key"] for k in keys]
    finally:
        processes = recorded_processes(state)
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes and not any(is_ours(p) for p in processes)
