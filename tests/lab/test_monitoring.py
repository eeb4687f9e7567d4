"""`lab up --monitoring`: a real Prometheus scrapes the twin; its API answers the dashboard."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ncclient.transport.session
import pytest
from lxml import etree
from ncclient import manager

from lab.launcher import (
    LabError,
    make_plan,
    process_commands,
    running_with,
    start_supervised,
    supervisor_running,
)
from lab.monitoring import DASHBOARD
from lab.processes import is_ours
from lab.topology import DEFAULT_TOPOLOGY, load_topology

ROOT = Path(__file__).resolve().parents[2]
ETSI_NS = "urn:etsi:qkd:yang:etsi-qkd-node"
DEADLINE_S = 60.0

pytestmark = pytest.mark.lab


def qkdsdn(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="160"),
    )


@dataclass
class Twin:
    state: Path
    endpoints: dict[str, Any]

    @property
    def prometheus(self) -> str:
        url = self.endpoints["monitoring"]["prometheus"]
        assert isinstance(url, str) and url.startswith("http://")
        return url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of `promql`; fails on a query Prometheus refuses."""
        response = httpx.get(
            f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", f"{promql}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self, promql: str, ok: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            result = self.query(promql)
            if ok(result):
                return result
            assert time.monotonic() < deadline, f"{what}: {promql} gave {result}"
            time.sleep(0.25)

    def client(self, sae: str) -> httpx.Client:
        pki = self.state / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.load_cert_chain(pki / f"sae-{sae}.pem", pki / f"sae-{sae}.key")
        return httpx.Client(verify=context, timeout=30.0)

    def enc_keys(self, number: int) -> None:
        km1 = self.endpoints["nodes"]["qnode1"]["km"]["etsi014_url"]
        with self.client("app1") as app1:
            for _ in range(number):
                response = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 1})
                assert response.status_code == 200, response.text


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(item["value"][1]) for item in result]


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    state = tmp_path_factory.mktemp("monitoring") / "state"
    up = qkdsdn("lab", "up", "triangle", "--monitoring", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "prometheus" in up.stdout
        yield Twin(state, json.loads((state / "endpoints.json").read_text()))
    finally:
        qkdsdn("lab", "down", "--state-dir", str(state))


def test_prometheus_scrapes_every_process_of_the_twin(twin: Twin) -> None:
    processes = set(twin.endpoints["monitoring"]["metrics"])
    assert processes == {"agents", "km-qnode1", "km-qnode2", "km-qnode3", "controller"}
    result = twin.wait_for(
        "up == 1", lambda r: {i["metric"]["process"] for i in r} == processes, "targets up"
    )
    assert {i["metric"]["job"] for i in result} == {"agents", "km", "controller"}


def test_prometheus_has_the_skr_of_a_link(twin: Twin) -> None:
    result = twin.wait_for(
        'qkdsdn_link_skr_bps{node="qnode1", peer="qnode2"}', lambda r: len(r) == 1, "SKR"
    )
    [skr] = _values(result)
    assert skr > 1000  # the triangle's links distil hundreds of kbit/s
    pools = twin.wait_for('qkdsdn_km_link_pool_bits{node="qnode1"}', lambda r: len(r) == 2, "pool")
    assert all(bits > 0 for bits in _values(pools))


def test_prometheus_has_the_key_response_delay_of_requests_made_here(twin: Twin) -> None:
    count = (
        'sum(qkdsdn_km_key_response_delay_seconds_count{node="qnode1", method="enc_keys",'
        ' master_sae="app1", slave_sae="app2"})'
    )
    twin.enc_keys(1)  # the series exists from the first request on
    [before] = _values(twin.wait_for(count, lambda r: len(r) == 1, "first request"))
    twin.enc_keys(5)
    twin.wait_for(count, lambda r: _values(r) == [before + 5], "five more requests")
    total = count.replace("_count", "_sum")
    [seconds] = _values(twin.query(total))
    assert 0 < seconds < 60 * (before + 5)
    p99 = (
        "histogram_quantile(0.99, sum by (le) (rate("
        'qkdsdn_km_key_response_delay_seconds_bucket{master_sae="app1"}[1m])))'
    )
    [delay] = _values(twin.wait_for(p99, lambda r: len(r) == 1, "p99"))
    assert 0 < delay <= 10


def test_a_netconf_subscriber_sees_the_skr_prometheus_has(twin: Twin) -> None:
    """The periodic sdqkdn_link_perf_update carries the numbers the metrics carry."""
    ncclient.transport.session.TICK = 0.005
    netconf = twin.endpoints["nodes"]["qnode1"]["netconf"]
    password = Path(netconf["password_file"]).read_text().strip()
    with manager.connect(
        host=netconf["host"],
        port=netconf["port"],
        username=netconf["username"],
        password=password,
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    ) as session:
        session.create_subscription(
            filter=("subtree", f'<sdqkdn_link_perf_update xmlns="{ETSI_NS}"/>')
        )
        notification = session.take_notification(block=True, timeout=30)
    assert notification is not None, "no sdqkdn_link_perf_update within 30 s"
    root = etree.fromstring(notification.notification_xml.encode())
    qkdl_id = root.findtext(f".//{{{ETSI_NS}}}qkdl_id")
    skr_text = root.findtext(f".//{{{ETSI_NS}}}skr")
    assert qkdl_id and skr_text
    metric = f'qkdsdn_link_skr_bps{{node="qnode1", qkdl_id="{qkdl_id}"}}'
    [skr] = _values(twin.wait_for(metric, lambda r: len(r) == 1, "SKR of that link"))
    assert abs(skr - int(skr_text)) <= 0.1 * skr


def test_every_dashboard_query_runs_and_returns_data(twin: Twin) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    assert len(queries) >= 15
    km1 = twin.endpoints["nodes"]["qnode1"]["km"]["etsi014_url"]
    with twin.client("app1") as app1:  # a refusal, twice: its counter then has an increase
        for _ in range(2):
            refused = app1.get(f"{km1}/api/v1/keys/nobody/enc_keys")
            assert refused.status_code == 400
            time.sleep(1.5)
    twin.enc_keys(3)
    cut = qkdsdn("lab", "fault", "cut", "qnode2-qnode3", "--state-dir", str(twin.state))
    assert cut.returncode == 0, cut.stdout + cut.stderr
    try:
        twin.wait_for(
            'qkdsdn_link_up{node="qnode2", peer="qnode3"}', lambda r: _values(r) == [0], "cut"
        )
        twin.enc_keys(3)
        for title, expr in queries:
            twin.wait_for(expr, lambda r: len(r) > 0, f"panel {title!r}")
    finally:
        qkdsdn("lab", "fault", "restore", "qnode2-qnode3", "--state-dir", str(twin.state))


def test_lab_down_stops_prometheus_with_the_rest(twin: Twin) -> None:
    pids = json.loads((twin.state / "pids.json").read_text())
    [prometheus] = [p for p in pids if p["name"] == "prometheus"]
    assert (twin.state / "prometheus").is_dir()  # its data lives in the state directory
    down = qkdsdn("lab", "down", "--state-dir", str(twin.state))
    assert down.returncode == 0 and "prometheus" in down.stdout
    assert not Path(f"/proc/{prometheus['pid']}").exists() or not _runs(prometheus)


def _runs(record: dict[str, Any]) -> bool:
    from lab.launcher import ManagedProcess

    return is_ours(ManagedProcess(record["name"], record["pid"], tuple(record["argv"]), ""))


def test_prometheus_failing_to_start_fails_lab_up_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    topology = load_topology(DEFAULT_TOPOLOGY)
    plan = make_plan(topology, DEFAULT_TOPOLOGY, tmp_path / "state", monitoring=True)
    with socket.socket() as taken:  # bound, not listening: Prometheus cannot have the port
        taken.bind(("127.0.0.1", plan.prometheus_port))
        with pytest.raises(LabError, match="prometheus exited") as error:
            start_supervised(plan, timeout=90)
    assert "address already in use" in str(error.value)
    assert supervisor_running(tmp_path / "state") is None
    commands = {argv: name for name, argv in process_commands(plan)}
    assert running_with(commands) == []
