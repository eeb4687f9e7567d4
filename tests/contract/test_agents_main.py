"""`qkdsdn agent run` as a process: ready lines, NETCONF and gRPC answer, SIGTERM stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import ncclient.transport.session
import pytest
import yaml
from lxml import etree
from ncclient import manager

from agents.datastore import DatastoreName
from common.protos import control_pb2 as ctl
from common.protos import control_pb2_grpc as ctl_grpc
from lab.configs import write_process_configs
from lab.plan import LabPlan
from tests.harness.agents import make_test_plan, operator_tls, running_agents, running_path

ncclient.transport.session.TICK = 0.001
ROOT = Path(__file__).resolve().parents[2]
AGENT_RUN = [sys.executable, "-m", "lab.cli", "agent", "run"]


class Lines:
    """Collects a process's output lines in a thread so the test can wait with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._ready:
                self.lines.append(line.rstrip("\n"))
                self._ready.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {prefix!r} line; output: {self.lines[-20:]}")
                self._ready.wait(left)


@pytest.fixture
def agents_process(tmp_path: Path) -> Iterator[tuple[LabPlan, subprocess.Popen[str], Lines]]:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    files = write_process_configs(plan)
    argv = [*AGENT_RUN, "--config", str(files["agent-a"]), "--config", str(files["agent-b"])]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    try:
        yield plan, process, Lines(process.stdout)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_agent_run_hosts_the_listed_nodes_and_stops_on_sigterm(
    agents_process: tuple[LabPlan, subprocess.Popen[str], Lines],
) -> None:
    plan, process, output = agents_process
    output.wait_for("ready: 2 agents", timeout=45)
    a, b = plan.node("a"), plan.node("b")
    assert output.wait_for("ready a", 1) == (
        f"ready a netconf=127.0.0.1:{a.netconf_port} grpc=127.0.0.1:{a.agent_grpc_port}"
    )
    password = Path(plan.credentials.password_file).read_text().strip()
    with manager.connect(
        host="127.0.0.1",
        port=b.netconf_port,
        username=plan.credentials.netconf_username,
        password=password,
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    ) as session:
        data = str(session.get().data_xml)
    assert b.qkdn_id in data and data.count("<qkd_link>") == 2
    assert "etsi-qkdn-types:OPERATING" in data
    operator = operator_tls(plan)
    credentials = grpc.ssl_channel_credentials(operator.ca, operator.key, operator.cert)
    with grpc.secure_channel(a.agent_grpc_address, credentials) as channel:
        control: Any = ctl_grpc.AgentControlStub(channel)
        status = control.Status(ctl.StatusRequest(), timeout=10)
    assert status.name == "a" and [link.peer_node for link in status.links] == ["b"]
    assert [link.status for link in status.links] == ["ACTIVE"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert (Path(plan.state_dir) / "agents" / "a" / "running.xml").exists()
    assert not (Path(plan.state_dir) / "agents" / "c").exists()


def test_agent_run_names_every_bad_field_of_every_file_before_listening(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    files = write_process_configs(plan)
    a = yaml.safe_load(files["agent-a"].read_text())
    a["listen"]["grpc"] = "127.0.0.1"
    a["links"][0]["seed_file"] = "nowhere.seed"
    files["agent-a"].write_text(yaml.safe_dump(a))
    b = yaml.safe_load(files["agent-b"].read_text())
    b["perf_interval_s"] = 0
    files["agent-b"].write_text(yaml.safe_dump(b))
    argv = [*AGENT_RUN, "--config", str(files["agent-a"]), "--config", str(files["agent-b"])]
    with socket.socket() as probe:  # nothing listens on a's NETCONF port afterwards either
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert probe.connect_ex(("127.0.0.1", plan.node("a").netconf_port)) != 0
    assert result.returncode == 2
    assert f"{files['agent-a']}: listen.grpc: '127.0.0.1' is not host:port" in result.stdout
    assert f"{files['agent-a']}: links[0].seed_file: no such file" in result.stdout
    assert f"{files['agent-b']}: perf_interval_s: must be > 0" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_agent_run_reports_a_port_in_use(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a"], [])
    argv = [*AGENT_RUN, "--config", str(write_process_configs(plan)["agent-a"])]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", plan.node("a").netconf_port))
        taken.listen()
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot start agents" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("durable, syncs", [(True, True), (False, False)])
def test_a_commit_is_fsynced_only_when_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, syncs: bool
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    synced: list[int] = []

    async def scenario() -> None:
        async with running_agents(plan, ["a"], durable=durable) as agents:
            real_fsync = os.fsync

            def counting_fsync(fd: int) -> None:
                synced.append(fd)
                real_fsync(fd)

            monkeypatch.setattr(os, "fsync", counting_fsync)
            config = etree.fromstring(
                '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                '<qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node">'
                "<qkdn_location_id>moved</qkdn_location_id></qkd_node></config>"
            )
            agents["a"].datastore.edit(DatastoreName.RUNNING, config)

    asyncio.run(scenario())
    assert bool(synced) is syncs
    assert "moved" in running_path(plan, "a").read_text()
