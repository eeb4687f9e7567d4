"""Real processes: the three-domain twin (lab/topologies/three-domains.yaml) under its
supervisor. app-a (domain A) gets keys with app-c (domain C) and dec_keys at C's KM returns
them; a border KM SIGKILLed in the middle of a stream of requests is restarted and no key is
delivered twice nor lost once acknowledged; with domain B's controller frozen, A's attempt to
reserve a new path through B fails cleanly and leaves nothing reserved anywhere. Each domain
is its own operator: controller A's NETCONF credentials are refused by a node of B, and one
Prometheus (`monitoring=True`) scrapes every domain's processes with a `domain` label."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.devices.session import DeviceAddress, NetconfSession, host_key_b64
from controller.errors import DeviceUnavailable
from lab.control import restart_process
from lab.endpoints import endpoints_from_plan
from lab.faults import kill_process
from lab.launcher import (
    make_plan,
    recorded_status,
    start_supervised,
    start_with_free_ports,
    stop,
    viewer_token,
)
from lab.monitoring import DASHBOARD, prometheus_url
from lab.plan import LabPlan
from lab.processes import ManagedProcess, is_ours
from lab.restarts import RestartPolicy
from lab.scenarios.runner import sae_client
from lab.topology import load_topology, topology_path

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]  # 15 processes on a busy 2-core machine

START_S = 240.0  # a busy 2-core machine starts 9 KMs, 3 agents and 3 controllers


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPlan]:
    state = tmp_path_factory.mktemp("three-domains")
    path = topology_path("three-domains")
    plan, _ = start_with_free_ports(  # another twin may take a planned port first
        make_plan(load_topology(path), path, state, monitoring=True),
        lambda planned: start_supervised(
            planned, timeout=START_S, policy=RestartPolicy(limit=5, window_s=60.0)
        ),
    )
    try:
        yield plan
    finally:
        for entry in recorded_status(state):  # a frozen process must be able to stop
            _signal(entry.process, signal.SIGCONT)
        stop(state)


def _signal(process: ManagedProcess, signum: int) -> None:
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        return
    try:
        if is_ours(process):
            signal.pidfd_send_signal(pidfd, signum)
    finally:
        os.close(pidfd)


def _process(plan: LabPlan, name: str) -> ManagedProcess:
    return next(r.process for r in recorded_status(Path(plan.state_dir)) if r.process.name == name)


def _enc(
    plan: LabPlan, client: httpx.Client, master: str, slave: str, timeout: float = 30.0
) -> httpx.Response:
    url = f"{plan.node(plan.app(master).node).km_etsi014_url}/api/v1/keys/{slave}/enc_keys"
    return client.get(url, params={"number": 1}, timeout=timeout)


def _dec(
    plan: LabPlan, client: httpx.Client, slave: str, master: str, key_id: str
) -> httpx.Response:
    url = f"{plan.node(plan.app(slave).node).km_etsi014_url}/api/v1/keys/{master}/dec_keys"
    return client.post(url, json={"key_IDs": [{"key_ID": key_id}]}, timeout=30.0)


def _key(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["key"])


def _holds(plan: LabPlan, domain: str) -> list[dict[str, Any]]:
    """The reservations domain `domain`'s controller holds (viewer role)."""
    view = plan.view(domain)
    reply = httpx.get(
        f"{view.controller.url}/interdomain/reservations",
        headers={"Authorization": f"Bearer {viewer_token(view)}"},
        timeout=5.0,
    )
    assert reply.status_code == 200, reply.text
    holds = reply.json()
    assert isinstance(holds, list)
    return holds


def _pending(holds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in holds if h.get("state") in ("reserved", "committing")]


def test_app_a_gets_keys_with_app_c_across_three_domains(twin: LabPlan) -> None:
    names = {r.process.name for r in recorded_status(Path(twin.state_dir))}
    assert {"controller-A", "controller-B", "controller-C", "km-a_b", "km-b_a"} <= names
    master, slave = sae_client(twin, "app-a"), sae_client(twin, "app-c")
    with master, slave:
        deadline = time.monotonic() + 60.0  # a link pool may still be resynchronising: 503
        while (enc := _enc(twin, master, "app-a", "app-c", timeout=60.0)).status_code == 503:
            assert time.monotonic() < deadline, enc.text
            time.sleep(0.2)
        assert enc.status_code == 200, enc.text
        entry = enc.json()["keys"][0]
        dec = _dec(twin, slave, "app-c", "app-a", entry["key_ID"])
        assert dec.status_code == 200, dec.text
        assert _key(dec.json()["keys"][0]) == _key(entry)
        again = _dec(twin, slave, "app-c", "app-a", entry["key_ID"])
        assert again.status_code != 200  # delivered once
    for domain in "ABC":  # every domain committed its segment; nothing left half-done
        assert _pending(_holds(twin, domain)) == []
        assert any(h.get("state") == "committed" for h in _holds(twin, domain))


def test_a_border_km_killed_mid_stream_loses_and_repeats_no_acknowledged_key(
    twin: LabPlan,
) -> None:
    delivered: dict[str, bytes] = {}  # key_ID -> key, as enc_keys handed it to app-a
    repeated: list[str] = []
    failures = 0
    before = _process(twin, "km-b_a").pid
    killed_at: float | None = None
    after_restart = 0
    deadline = time.monotonic() + 180.0
    master, slave = sae_client(twin, "app-a"), sae_client(twin, "app-c")
    with master, slave:
        while after_restart < 6 and time.monotonic() < deadline:
            try:
                enc = _enc(twin, master, "app-a", "app-c", timeout=20.0)
            except httpx.HTTPError:
                failures += 1
                continue
            if enc.status_code != 200:
                failures += 1
                time.sleep(0.1)  # the KM answered at once: do not spin
                continue
            entry = enc.json()["keys"][0]
            if entry["key_ID"] in delivered:
                repeated.append(entry["key_ID"])
            delivered[entry["key_ID"]] = _key(entry)
            if killed_at is None and len(delivered) >= 3:
                kill_process(Path(twin.state_dir), "km-b_a")  # hand-offs keep arriving
                killed_at = time.monotonic()
            elif killed_at is not None and _process(twin, "km-b_a").pid != before:
                after_restart += 1
        assert killed_at is not None
        assert after_restart == 6, f"{len(delivered)} keys, {failures} failures, no recovery"
        assert repeated == []
        for key_id, key in delivered.items():  # every acknowledged key reaches app-c, once
            dec = _dec(twin, slave, "app-c", "app-a", key_id)
            assert dec.status_code == 200, f"{key_id}: {dec.text}"
            assert _key(dec.json()["keys"][0]) == key
    status = {r.process.name: r for r in recorded_status(Path(twin.state_dir))}
    assert status["km-b_a"].restarts >= 1 and status["km-b_a"].last_exit == -9


def test_with_bs_controller_frozen_a_new_path_through_b_fails_and_leaves_nothing_reserved(
    twin: LabPlan,
) -> None:
    controller_b = _process(twin, "controller-B")
    _signal(controller_b, signal.SIGSTOP)  # alive, listening, answering nothing
    try:
        master = sae_client(twin, "app-a2")  # a pair never asked before: a new reservation
        with master:
            began = time.monotonic()
            try:
                enc = _enc(twin, master, "app-a2", "app-c1", timeout=30.0)
                refused = enc.status_code != 200
            except httpx.TimeoutException:
                refused = True
            assert refused, "keys through a domain whose controller does not answer"
            assert time.monotonic() - began < 35.0
        # A and C hold nothing for it once A gave up (A may be mid-retry: wait for a calm moment)
        deadline = time.monotonic() + 30.0
        while True:
            a_holds, c_holds = _holds(twin, "A"), _holds(twin, "C")
            new = [h for h in a_holds + c_holds if h.get("master_sae") == "app-a2"]
            if not _pending(new) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert _pending(new) == []
        assert not [h for h in new if h.get("state") == "committed"]
    finally:
        _signal(controller_b, signal.SIGCONT)
    # B, answering again, keeps nothing reserved beyond its reservation TTL
    deadline = time.monotonic() + 45.0
    seen: list[tuple[str, str, float]] = []
    while (left := _pending(_holds(twin, "B"))) and time.monotonic() < deadline:
        seen += [(h["id"][:8], h["state"], h["expires_at"] - time.time()) for h in left]
        time.sleep(0.5)
    assert left == [], sorted(set(seen))[:20]
    message = restart_process(Path(twin.state_dir), "controller-B", timeout=120.0)
    assert "listening" in message


def _controller_address(plan: LabPlan, domain: str, node: str, *, pin: bool) -> DeviceAddress:
    """How controller `domain` (its own config file) would log in to `node`'s agent."""
    folder = Path(plan.state_dir) / "config"
    netconf = yaml.safe_load((folder / f"controller-{domain}.yaml").read_text())["netconf"]
    target = plan.node(node)
    return DeviceAddress(
        device_id=target.qkdn_id,
        name=node,
        host=target.host,
        port=target.netconf_port,
        username=netconf["username"],
        password=(folder / netconf["password_file"]).read_text().strip(),
        key_file=str(folder / netconf["client_key"]),
        host_key_b64=host_key_b64(folder / netconf["known_host_key"]) if pin else None,
    )


def test_controller_as_netconf_credentials_are_refused_by_a_node_of_b(twin: LabPlan) -> None:
    own = NetconfSession.open(_controller_address(twin, "A", "a1", pin=True), timeout=30.0)
    try:  # its own domain's agent: accepted, host key as pinned
        assert own.connected
    finally:
        own.close()
    with pytest.raises(DeviceUnavailable, match="host key is not the one"):
        NetconfSession.open(_controller_address(twin, "A", "b1", pin=True), timeout=30.0)
    # even accepting any host key, B's agent takes neither A's client key nor A's password
    with pytest.raises(DeviceUnavailable, match="authentication failed"):
        NetconfSession.open(_controller_address(twin, "A", "b1", pin=False), timeout=30.0)


def test_one_prometheus_scrapes_every_domains_processes_labelled_with_their_domain(
    twin: LabPlan,
) -> None:
    endpoints = endpoints_from_plan(twin)
    assert endpoints.monitoring is not None
    processes = set(endpoints.monitoring.metrics)
    assert {"controller-A", "controller-B", "controller-C", "km-b_a"} <= processes
    url = prometheus_url(twin)

    def query(promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", f"{promql}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    deadline = time.monotonic() + 60.0

    def wait(promql: str, label: str, expected: set[str]) -> list[dict[str, Any]]:
        while True:
            found = query(promql)
            if {i["metric"].get(label) for i in found} == expected:
                return found
            assert time.monotonic() < deadline, (promql, found)
            time.sleep(0.5)

    up = wait("up == 1", "process", processes)
    domains = {i["metric"]["process"]: i["metric"].get("domain") for i in up}
    assert domains["controller-B"] == "B" and domains["km-a_b"] == "A"
    assert domains["km-c2"] == "C" and domains["agents-2"] == "B"
    # the dashboard's queries run as they are; per domain, its links and its controller
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query(target["expr"])
    for promql in (
        "count by (domain) (qkdsdn_link_skr_bps)",
        "count by (domain) (qkdsdn_controller_devices_connected)",
    ):
        wait(promql, "domain", set("ABC"))
