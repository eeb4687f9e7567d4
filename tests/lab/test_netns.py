"""The namespace lab on this host: namespaces made and removed, partitions, the twin across them.

These tests need root and a working `ip netns` (CI here is root); elsewhere they skip and say
why (the reason comes from `lab.netns.unavailable`, which really tries `ip netns add`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import yaml

from lab import netns
from lab.endpoints import Endpoints
from lab.launcher import ManagedProcess, is_ours, recorded_processes
from lab.netns import NetnsError, NetnsPlan
from lab.plan import LabPlan
from lab.scenarios.runner import sae_client

ROOT = Path(__file__).resolve().parents[2]
NODES = ("qnode1", "qnode2", "qnode3")

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def namespaces_allowed() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"no network namespaces on this machine: {reason}")


@pytest.fixture
def lab(namespaces_allowed: None, tmp_path: Path) -> Iterator[tuple[Path, NetnsPlan]]:
    state = tmp_path / "state"
    plan = netns.create(state, NODES)
    try:
        yield state, plan
    finally:
        netns.teardown(state)


def _wait(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _connects(address: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((address, port)) == 0


def _listener(namespace: str, address: str) -> tuple[subprocess.Popen[str], int]:
    """A TCP server inside `namespace` that accepts forever; returns it and its port."""
    code = textwrap.dedent(
        f"""
        import socket
        server = socket.socket()
        server.bind(({address!r}, 0))
        server.listen()
        print(server.getsockname()[1], flush=True)
        while True:
            server.accept()[0].close()
        """
    )
    argv = netns.exec_argv(namespace, [sys.executable, "-c", code])
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def _stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(timeout=10)


def test_create_makes_one_namespace_per_node_and_teardown_leaves_nothing(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    plan = netns.create(state, NODES)
    try:
        assert (state / netns.NETNS_FILE).exists()
        assert set(netns.leftovers(plan)) == {
            plan.bridge,
            *(s.namespace for s in plan.slots),
            *(s.veth for s in plan.slots),
        }
        inside = subprocess.run(
            ["ip", "-n", plan.slot("qnode2").namespace, "-o", "-4", "addr", "show"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"{plan.address_of('qnode2')}/24" in inside
        assert "127.0.0.1/8" in inside  # loopback is up
        host = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", plan.bridge],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"{plan.host_address}/24" in host
    finally:
        removed = netns.teardown(state)
    assert plan.bridge in removed
    assert netns.leftovers(plan) == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert plan.tag not in listed and plan.tag not in links
    assert not (state / netns.NETNS_FILE).exists()
    assert netns.teardown(state) == []  # idempotent


def test_the_host_and_other_nodes_reach_a_node_at_its_own_address(
    lab: tuple[Path, NetnsPlan],
) -> None:
    _, plan = lab
    server, port = _listener(plan.slot("qnode2").namespace, plan.address_of("qnode2"))
    try:
        assert _connects(plan.address_of("qnode2"), port)
        assert not _connects("127.0.0.1", port)  # it is not on the host's loopback
        probe = (
            "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5);"
            " print(s.getsockname()[0])"
        )
        from_node1 = subprocess.run(
            netns.exec_argv(
                plan.slot("qnode1").namespace,
                [sys.executable, "-c", probe, plan.address_of("qnode2"), str(port)],
            ),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert from_node1.returncode == 0, from_node1.stderr
        assert from_node1.stdout.strip() == plan.address_of("qnode1")
    finally:
        _stop(server)


def test_a_partition_cuts_a_nodes_network_and_heal_restores_it(
    lab: tuple[Path, NetnsPlan],
) -> None:
    _, plan = lab
    server, port = _listener(plan.slot("qnode3").namespace, plan.address_of("qnode3"))
    other, other_port = _listener(plan.slot("qnode1").namespace, plan.address_of("qnode1"))
    address = plan.address_of("qnode3")
    try:
        assert _connects(address, port)
        assert "cut" in netns.set_partition(plan, "qnode3", cut=True)
        assert netns.is_partitioned(plan, "qnode3")
        assert not _connects(address, port, timeout=1.0)
        assert not netns.is_partitioned(plan, "qnode1")
        assert _connects(plan.address_of("qnode1"), other_port)  # the others are unaffected
        assert "restored" in netns.set_partition(plan, "qnode3", cut=False)
        assert not netns.is_partitioned(plan, "qnode3")
        assert _wait(lambda: _connects(address, port))
    finally:
        _stop(server)
        _stop(other)


def test_partition_of_an_unknown_node_names_the_known_ones(lab: tuple[Path, NetnsPlan]) -> None:
    _, plan = lab
    with pytest.raises(NetnsError, match=r"no node 'qnode9'.*qnode1, qnode2, qnode3"):
        netns.set_partition(plan, "qnode9", cut=True)


def test_a_second_create_in_the_same_state_dir_is_refused(lab: tuple[Path, NetnsPlan]) -> None:
    state, plan = lab
    with pytest.raises(NetnsError, match="lab down"):
        netns.create(state, NODES)
    assert sorted(netns.leftovers(plan)) == sorted(
        [plan.bridge, *(s.namespace for s in plan.slots), *(s.veth for s in plan.slots)]
    )


def test_two_labs_get_distinct_names_and_subnets(namespaces_allowed: None, tmp_path: Path) -> None:
    first = netns.create(tmp_path / "one", NODES)
    try:
        second = netns.create(tmp_path / "two", NODES)
        try:
            assert first.tag != second.tag
            assert first.subnet != second.subnet
        finally:
            netns.teardown(tmp_path / "two")
    finally:
        netns.teardown(tmp_path / "one")
    assert netns.leftovers(first) == [] and netns.leftovers(second) == []


CRASHING_UP = """
import os, signal, sys
from pathlib import Path
from lab import netns

real_ip, calls = netns._ip, [0]

def dying_ip(*args, check=True):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no teardown: a real crash
    return real_ip(*args, check=check)

netns._ip = dying_ip
netns.create(Path(sys.argv[1]), ["qnode1", "qnode2", "qnode3"])
"""


def test_teardown_after_a_crash_half_way_through_create_removes_the_leftovers(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_UP, str(state), "20"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    plan = netns.recorded(state)
    assert plan is not None  # recorded before anything was made
    left = netns.leftovers(plan)
    assert plan.bridge in left and plan.slot("qnode1").namespace in left
    assert plan.slot("qnode3").namespace not in left  # it crashed before getting there
    netns.teardown(state)
    assert netns.leftovers(plan) == []
    assert netns.recorded(state) is None


def test_teardown_kills_what_still_runs_inside_the_namespaces(
    lab: tuple[Path, NetnsPlan],
) -> None:
    state, plan = lab
    orphan = subprocess.Popen(
        netns.exec_argv(
            plan.slot("qnode1").namespace, [sys.executable, "-c", "import time; time.sleep(600)"]
        )
    )
    assert _wait(lambda: orphan.pid in netns.namespace_pids(plan.slot("qnode1").namespace))
    netns.teardown(state)
    assert orphan.wait(timeout=10) == -signal.SIGKILL
    assert netns.leftovers(plan) == []


# ---------------------------------------------------------------- the whole twin in namespaces


def qkdsdn(
    *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT), **(env or {})),
    )  # fmt: skip


def _nothing_of(tag: str) -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return tag not in listed and tag not in links


def _established(namespace: str) -> list[tuple[str, str, set[int]]]:
    """(local address:port, peer address:port, pids) of the TCP connections in `namespace`."""
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-tnpH", "state", "established"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    connections = []
    for line in out.splitlines():
        fields = line.split()
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        connections.append((_plain(fields[2]), _plain(fields[3]), pids))
    return connections


def _plain(address: str) -> str:
    """ "[::ffff:10.77.0.3]:5000" (an IPv4 peer of a dual-stack socket) -> "10.77.0.3:5000"."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return f"{host.removeprefix('::ffff:')}:{port}"


def _client(state: Path, sae: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
    context.load_cert_chain(state / "pki" / f"sae-{sae}.pem", state / "pki" / f"sae-{sae}.key")
    return httpx.Client(verify=context, timeout=10.0)


def _round_trip(endpoints: Endpoints, state: Path) -> bool:
    """app1 gets a key at qnode1's KM, app2 the same key at qnode3's KM, at their addresses."""
    km1, km3 = endpoints.app("app1").km_etsi014_url, endpoints.app("app2").km_etsi014_url
    with _client(state, "app1") as app1, _client(state, "app2") as app2:
        enc = app1.get(f"{km1}/api/v1/keys/app2/enc_keys", params={"number": 1, "size": 256})
        assert enc.status_code == 200, enc.text
        keys = enc.json()["keys"]
        dec = app2.post(
            f"{km3}/api/v1/keys/app1/dec_keys",
            json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
        )
        assert dec.status_code == 200, dec.text
        return [k["key"] for k in keys] == [k["key"] for k in dec.json()["keys"]]


def test_the_reference_experiment_runs_across_namespaces(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state, out = tmp_path / "state", tmp_path / "out"
    run = qkdsdn(
        "lab", "run", "--hosts", "netns", "--state-dir", str(state), "--out", str(out),
        "--requests", "3", timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((out / "results.json").read_text())
    assert result["all_keys_match"] and len(result["requests"]) == 3
    assert _nothing_of(netns.lab_tag(state))
    assert not (state / netns.NETNS_FILE).exists()


def test_key_managers_and_netconf_cross_the_namespaces_and_a_partition_cuts_a_node(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = qkdsdn(
        "lab", "up", "triangle", "--hosts", "netns", "--state-dir", str(state),
        "--force-path", "app1>app2=qnode1,qnode2,qnode3",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        endpoints = Endpoints.load(state / "endpoints.json")
        plan = netns.recorded(state)
        assert plan is not None and endpoints.network is not None
        assert endpoints.network.kind == "netns"
        assert endpoints.network.applications == plan.host_address
        node1, node2 = endpoints.node("qnode1"), endpoints.node("qnode2")
        assert node1.netconf.host == plan.address_of("qnode1")
        assert node2.km.relay_address.startswith(f"{plan.address_of('qnode2')}:")
        assert endpoints.app("app1").km_etsi014_url.startswith(f"https://{node1.netconf.host}:")
        assert endpoints.controller.url.startswith(f"http://{plan.controller.address}:")
        assert _round_trip(endpoints, state)  # relayed qnode1 → qnode2 → qnode3

        # The KM of qnode1 holds its relay connection to qnode2's KM at qnode2's address.
        km1 = next(p for p in recorded_processes(state) if p.name == "km-qnode1")
        relay2 = node2.km.relay_address
        in_node1 = _established(plan.slot("qnode1").namespace)
        assert any(
            local.startswith(f"{plan.address_of('qnode1')}:") and peer == relay2 and km1.pid in pids
            for local, peer, pids in in_node1
        ), in_node1
        # Not even its own agent is reached over loopback: every peer is a real address.
        assert not any(peer.startswith("127.") for _, peer, pids in in_node1 if km1.pid in pids)
        # ... and qnode2's KM sees it coming from qnode1's address.
        in_node2 = _established(plan.slot("qnode2").namespace)
        assert any(
            local == relay2 and peer.startswith(f"{plan.address_of('qnode1')}:")
            for local, peer, _ in in_node2
        ), in_node2
        # The controller's NETCONF sessions reach every node at the node's address.
        in_controller = _established(plan.controller.namespace)
        for node in endpoints.nodes:
            assert any(peer == node.netconf.address for _, peer, _ in in_controller), node.name

        cut = qkdsdn("lab", "fault", "partition", "qnode3", "--state-dir", str(state))
        assert cut.returncode == 0, cut.stderr
        assert "cut" in json.loads(cut.stdout)["result"]
        with _client(state, "app2") as app2, pytest.raises(httpx.TransportError):
            app2.get(f"{endpoints.app('app2').km_etsi014_url}/api/v1/keys/app1/status", timeout=2.0)
        heal = qkdsdn("lab", "fault", "heal", "qnode3", "--state-dir", str(state))
        assert heal.returncode == 0, heal.stderr
        assert _round_trip(endpoints, state)

        unknown = qkdsdn("lab", "fault", "partition", "qnode9", "--state-dir", str(state))
        assert unknown.returncode == 1 and "no node 'qnode9'" in unknown.stderr
    finally:
        processes = recorded_processes(state)
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes and not any(is_ours(p) for p in processes)
    assert _nothing_of(netns.lab_tag(state))


def test_key_managers_without_peer_addresses_learn_the_real_ones_across_namespaces(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = qkdsdn(
        "lab", "up", "triangle", "--hosts", "netns", "--state-dir", str(state),
        "--force-path", "app1>app2=qnode1,qnode2,qnode3",
        env={"QKDSDN_LAB_PEER_RELAYS": "learn"},
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for node in NODES:  # no key manager's file says where its peers relay
            km_file = yaml.safe_load((state / "config" / f"km-{node}.yaml").read_text())
            assert km_file["peers"] and all("relay" not in p for p in km_file["peers"])
        endpoints = Endpoints.load(state / "endpoints.json")
        plan = netns.recorded(state)
        assert plan is not None
        # The KMs learn each other's address with the path, then synchronise the links: the
        # first relay may be refused meanwhile (503), as after a restart; bounded.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                assert _round_trip(endpoints, state)  # relayed qnode1 → qnode2 → qnode3
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert _round_trip(endpoints, state)
        # qnode1's KM reached qnode2's KM at the address it learned: qnode2's real one.
        km1 = next(p for p in recorded_processes(state) if p.name == "km-qnode1")
        relay2 = endpoints.node("qnode2").km.relay_address
        assert relay2.startswith(f"{plan.address_of('qnode2')}:")
        in_node1 = _established(plan.slot("qnode1").namespace)
        assert any(peer == relay2 and km1.pid in pids for _, peer, pids in in_node1), in_node1
    finally:
        processes = recorded_processes(state)
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes and not any(is_ours(p) for p in processes)


def test_partition_without_namespaces_says_what_it_needs(tmp_path: Path) -> None:
    fault = qkdsdn("lab", "fault", "partition", "qnode1", "--state-dir", str(tmp_path))
    assert fault.returncode == 1
    assert "--hosts netns" in fault.stderr


def test_lab_down_after_lab_up_was_killed_removes_every_process_and_namespace(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "lab", "up", "triangle", "--hosts", "netns",
         "--state-dir", str(state)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    seen: list[ManagedProcess] = []

    def some_started() -> bool:
        nonlocal seen
        seen = recorded_processes(state) if (state / "pids.json").exists() else []
        return any(is_ours(p) for p in seen)

    try:
        assert _wait(some_started, timeout=120), "lab up started nothing"
    finally:
        up.kill()  # a crash: lab up leaves namespaces, a supervisor and processes behind
        up.wait()
    assert (state / netns.NETNS_FILE).exists()
    down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(is_ours(p) for p in seen)
    assert _nothing_of(netns.lab_tag(state))
    again = qkdsdn("lab", "down", "--state-dir", str(state))
    assert again.returncode == 0, again.stderr


# ---------------------------------------------------------------- three domains in namespaces


def _enc_dec_across_domains(plan: LabPlan, deadline: float) -> tuple[str, bool]:
    """app-a (a1, domain A) gets a key for app-c; app-c gets it at c2 (domain C): (key_ID,
    same key). While the link pools synchronise after start-up the chain answers 503."""
    enc_url = f"{plan.node('a1').km_etsi014_url}/api/v1/keys/app-c/enc_keys"
    dec_url = f"{plan.node('c2').km_etsi014_url}/api/v1/keys/app-a/dec_keys"
    with sae_client(plan, "app-a") as master, sae_client(plan, "app-c") as slave:
        while (enc := master.get(enc_url, params={"number": 1}, timeout=60.0)).status_code == 503:
            assert time.monotonic() < deadline, enc.text
            time.sleep(0.5)
        assert enc.status_code == 200, enc.text
        key = enc.json()["keys"][0]
        dec = slave.post(dec_url, json={"key_IDs": [{"key_ID": key["key_ID"]}]}, timeout=30.0)
        assert dec.status_code == 200, dec.text
        return key["key_ID"], dec.json()["keys"][0]["key"] == key["key"]


def _handed_off(journal: Path) -> list[tuple[str, str, str]]:
    """(key_id, sending peer, its ack callback URL) of the keys a border KM received over 020."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10.0)) as db:
        rows = db.execute("SELECT key_id, peer, callback FROM incoming").fetchall()
    return [(str(k), str(p), str(c)) for k, p, c in rows]


@pytest.mark.timeout(900)  # 21 processes in 12 namespaces on a busy 2-core machine
def test_three_domains_run_across_namespaces_with_the_020_hand_off_between_the_sites_two_hosts(
    namespaces_allowed: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = qkdsdn(
        "lab", "up", "three-domains", "--hosts", "netns", "--state-dir", str(state),
        "--timeout", "400", timeout=600,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        spaces, plan = netns.recorded(state), LabPlan.load(state / "plan.json")
        assert spaces is not None
        controllers = {slot.role: slot for slot in spaces.controllers}
        assert set(controllers) == {"controller-A", "controller-B", "controller-C"}
        # every process runs inside its own host's namespace
        for process in recorded_processes(state):
            if process.name.startswith("controller-"):
                namespace = controllers[process.name].namespace
            elif process.name.startswith("km-"):
                namespace = spaces.slot(process.name.removeprefix("km-")).namespace
            else:
                continue
            assert process.pid in netns.namespace_pids(namespace), process.name
        # a border site's two nodes are two hosts: a_b and b_a each at their own address
        a_b, b_a = spaces.address_of("a_b"), spaces.address_of("b_a")
        assert a_b != b_a

        key_id, same = _enc_dec_across_domains(plan, time.monotonic() + 240.0)
        assert same  # app-a's key, handed A → B → C, is app-c's key at c2

        # The 020 hand-off went from a_b's namespace to b_a's: b_a journaled the key from a_b
        # with a callback on a_b's own address (b_a answers only a callback on its peer's host)
        received = _handed_off(state / "km" / "b_a" / "interdomain.sqlite")
        assert (key_id, "a_b") in {(k, p) for k, p, _ in received}
        callback = next(c for k, _, c in received if k == key_id)
        assert callback.startswith(f"https://{a_b}:{plan.node('a_b').km_etsi020_port}/")
        # ... and a_b's KM holds its 020 connection from its address to b_a's 020 port (an
        # idle connection may close: ask again until it is seen, bounded)
        km_a_b = next(p for p in recorded_processes(state) if p.name == "km-a_b")
        to_b_a = f"{b_a}:{plan.node('b_a').km_etsi020_port}"

        def handing_off() -> bool:
            return any(
                local.startswith(f"{a_b}:") and peer == to_b_a and km_a_b.pid in pids
                for local, peer, pids in _established(spaces.slot("a_b").namespace)
            )

        deadline = time.monotonic() + 120.0
        while not handing_off():
            assert time.monotonic() < deadline, _established(spaces.slot("a_b").namespace)
            _enc_dec_across_domains(plan, deadline)

        # Each controller reaches its own domain's nodes (NETCONF at their addresses) and
        # no node of another domain.
        netconf = {n.name: f"{n.host}:{n.netconf_port}" for n in plan.nodes}
        for domain in plan.domains:
            peers = {peer for _, peer, _ in _established(controllers[domain.process].namespace)}
            own = {netconf[n] for n in domain.nodes}
            others = {address for n, address in netconf.items() if n not in domain.nodes}
            assert own <= peers, (domain.name, peers)
            assert not peers & others, (domain.name, peers & others)
    finally:
        processes = recorded_processes(state) if (state / "pids.json").exists() else []
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes and not any(is_ours(p) for p in processes)
    assert _nothing_of(netns.lab_tag(state))
