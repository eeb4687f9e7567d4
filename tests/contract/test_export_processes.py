"""The exported files run: an agent, its key manager and the controller start from the files
`lab export` wrote (their containers' commands, with the addresses moved to loopback by
QKDSDN_* variables as a container's environment may); the KM serves ETSI 014 with its exported
certificate and the controller logs in to the agent with the exported NETCONF credentials."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from km.etsi014.server import TlsFiles, client_tls_context
from lab.export.containerlab import STATE, containerlab_addressing, write_containerlab
from lab.export.network import CONTAINER_ROOT, TOKEN_FILE, plan_export
from lab.topology import topology_path
from tests.harness.etsi014 import read_ready_line

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def spawn(
    command: str, out: Path, env: Mapping[str, str], log: Path, started: list[Any]
) -> subprocess.Popen[bytes]:
    """Runs a node's containerlab `cmd` here: its config path is the bound file."""
    args = command.split()
    args[3] = str(out / STATE / Path(args[3]).relative_to(CONTAINER_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
    )
    started.append(process)
    return process


def start(
    command: str, out: Path, env: Mapping[str, str], log: Path, started: list[Any]
) -> tuple[subprocess.Popen[bytes], str]:
    """`spawn`, then its `ready ...` line."""
    process = spawn(command, out, env, log, started)
    line = read_ready_line(process, START_TIMEOUT_S)
    assert line is not None, f"{command.split()[0]} did not get ready:\n{log.read_text()[-3000:]}"
    return process, line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_exported_agent_key_manager_and_controller_start_from_their_files_and_work(
    tmp_path: Path, started: list[Any]
) -> None:
    network = plan_export(topology_path("triangle"), tmp_path / STATE, containerlab_addressing)
    doc = yaml.safe_load(write_containerlab(network, tmp_path, "unused").read_text())
    nodes = doc["topology"]["nodes"]
    _, agent_ready = start(
        nodes["qnode1"]["cmd"],
        tmp_path,
        {"QKDSDN_LISTEN__NETCONF": "127.0.0.1:0", "QKDSDN_LISTEN__GRPC": "127.0.0.1:0"},
        tmp_path / "agent.log",
        started,
    )
    grpc = next(part for part in agent_ready.split() if part.startswith("grpc="))[5:]
    _, km_ready = start(
        nodes["qnode1-km"]["cmd"],
        tmp_path,
        {
            "QKDSDN_AGENT": grpc,
            **{
                f"QKDSDN_LISTEN__{name}": "127.0.0.1:0"
                for name in ("ETSI014", "ETSI004", "RELAY", "SKIP")
            },
        },
        tmp_path / "km.log",
        started,
    )
    url = next(part for part in km_ready.split() if part.startswith("etsi014="))[8:]
    pki = tmp_path / STATE / "pki"
    tls = client_tls_context(TlsFiles(pki / "sae-app1.pem", pki / "sae-app1.key", pki / "ca.pem"))
    with httpx.Client(base_url=url, verify=tls, timeout=30) as client:
        status = client.get("/api/v1/keys/app2/status")
    assert status.status_code == 200, status.text
    assert status.json()["source_KME_ID"] == network.plan.node("qnode1").qkdn_id

    netconf = next(part for part in agent_ready.split() if part.startswith("netconf="))[8:]
    api = f"127.0.0.1:{free_port()}"
    controller = spawn(
        nodes["controller"]["cmd"],
        tmp_path,
        {"QKDSDN_LISTEN__API": api, "QKDSDN_NODES__0__NETCONF": netconf},
        tmp_path / "controller.log",
        started,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    devices: list[dict[str, Any]] = []
    token = (tmp_path / STATE / TOKEN_FILE).read_text().strip()
    bearer = {"Authorization": f"Bearer {token}"}  # every call needs a role's token
    while time.monotonic() < deadline and controller.poll() is None:
        try:
            devices = httpx.get(f"http://{api}/status", headers=bearer, timeout=5).json()["devices"]
        except httpx.HTTPError:
            devices = []
        if any(d["name"] == "qnode1" and d["connected"] for d in devices):
            break
        time.sleep(0.2)
    log = (tmp_path / "controller.log").read_text()[-3000:]
    assert any(d["name"] == "qnode1" and d["connected"] for d in devices), log
    assert not any(d["connected"] for d in devices if d["name"] != "qnode1")  # not reachable here
