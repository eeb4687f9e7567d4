"""`qkdsdn lab up | status | fault | down` as a user runs them, with an operator's own CA."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from lab.launcher import ManagedProcess, is_ours, recorded_processes
from lab.pki import CertPaths, create_ca

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab


def qkdsdn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="160"),
    )


def _client(state: Path, sae: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
    context.load_cert_chain(state / "pki" / f"sae-{sae}.pem", state / "pki" / f"sae-{sae}.key")
    return httpx.Client(verify=context, timeout=30.0)


def _round_trip(endpoints: dict[str, object], state: Path) -> bool:
    nodes = endpoints["nodes"]
    assert isinstance(nodes, dict)
    km1, km3 = nodes["qnode1"]["km"]["etsi014_url"], nodes["qnode3"]["km"]["etsi014_url"]
    with _client(state, "app1") as app1, _client(state, "app2") as app2:
        enc = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 2, "size": 256})
        assert enc.status_code == 200, enc.text
        keys = enc.json()["keys"]
        dec = app2.post(
            f"{km3}/api/v1/keys/app1/dec_keys",
            json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
        )
        assert dec.status_code == 200, dec.text
        return [k["key"] for k in keys] == [k["key"] for k in dec.json()["keys"]]


def test_up_status_fault_down_with_an_operators_ca(tmp_path: Path) -> None:
    own = create_ca(CertPaths(tmp_path / "op-ca.pem", tmp_path / "op-ca.key"), "Operator CA")
    state = tmp_path / "state"
    up = qkdsdn(
        "lab", "up", "triangle", "--state-dir", str(state),
        "--ca-cert", str(tmp_path / "op-ca.pem"), "--ca-key", str(tmp_path / "op-ca.key"),
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        endpoints = json.loads((state / "endpoints.json").read_text())
        assert set(endpoints["nodes"]) == {"qnode1", "qnode2", "qnode3"}
        # Every certificate of the twin is signed by the operator's CA.
        sae_cert = x509.load_pem_x509_certificate((state / "pki" / "sae-app1.pem").read_bytes())
        assert sae_cert.issuer == own.cert.subject
        assert not (state / "pki" / "ca.key").exists()
        assert _round_trip(endpoints, state)

        status = qkdsdn("lab", "status", "--state-dir", str(state))
        assert status.returncode == 0
        assert status.stdout.count("running") == 5

        cut = qkdsdn("lab", "fault", "cut", "qnode1-qnode3", "--state-dir", str(state))
        assert cut.returncode == 0, cut.stderr
        assert json.loads(cut.stdout)["result"].count("OFF") == 2
        # The controller re-routes through qnode2: keys still agree at both ends.
        assert _round_trip(endpoints, state)

        unknown = qkdsdn("lab", "fault", "cut", "qnode1-qnode9", "--state-dir", str(state))
        assert unknown.returncode == 1 and "no link 'qnode1-qnode9'" in unknown.stderr
    finally:
        processes = recorded_processes(state)
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert processes and not any(is_ours(p) for p in processes)
    assert recorded_processes(state) == []


def test_up_with_a_bad_topology_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes: {a: {}, b: {}}\nlinks:\n  - {between: [a, z]}\n")
    up = qkdsdn("lab", "up", str(bad), "--state-dir", str(tmp_path / "state"))
    assert up.returncode == 1
    assert "unknown node 'z'" in up.stdout + up.stderr
    assert not (tmp_path / "state").exists()


def test_ctrl_c_during_a_run_stops_everything_it_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "lab", "run", "--state-dir", str(state),
         "--out", str(tmp_path / "out"), "--requests", "5000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        seen: list[ManagedProcess] = []
        while time.monotonic() < deadline and run.poll() is None:
            seen = recorded_processes(state) if (state / "pids.json").exists() else []
            if len(seen) == 5 and all(is_ours(p) for p in seen):
                break
            time.sleep(0.05)
        assert len(seen) == 5, "the twin did not come up"
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) != 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert not any(is_ours(p) for p in seen)
    assert recorded_processes(state) == []


def test_agents_spread_over_processes_still_make_one_twin(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = qkdsdn("lab", "up", "triangle", "--state-dir", str(state), "--agent-processes", "2")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        processes = recorded_processes(state)
        hosts = {
            p.name: [
                Path(p.argv[i + 1]).stem.removeprefix("agent-")
                for i, arg in enumerate(p.argv)
                if arg == "--config"
            ]
            for p in processes
            if p.name.startswith("agents")
        }
        assert hosts == {"agents-1": ["qnode1", "qnode2"], "agents-2": ["qnode3"]}
        # the relay crosses the two agents processes: keys still agree at both ends
        endpoints = json.loads((state / "endpoints.json").read_text())
        assert _round_trip(endpoints, state)
    finally:
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert not any(is_ours(p) for p in processes)


def test_up_refuses_zero_agent_processes(tmp_path: Path) -> None:
    up = qkdsdn(
        "lab", "up", "triangle", "--state-dir", str(tmp_path / "s"), "--agent-processes", "0"
    )
    assert up.returncode == 2 and "at least 1" in up.stdout + up.stderr
    assert not (tmp_path / "s").exists()
