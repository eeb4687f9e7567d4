"""The namespace lab on this host: namespaces, veths and bridge made and removed, partitions.

These tests need root and a working `ip netns` (CI here is root); elsewhere they skip and say
why (the reason comes from `lab.netns.unavailable`, which really tries `ip netns add`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import netns
from lab.netns import NetnsError, NetnsPlan

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
