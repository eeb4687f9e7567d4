"""The supervised twin: a dead process comes back, one that keeps dying is given up, and
`lab down` stops everything the lab started, restarted ones included, even without its
supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.launcher import (
    ManagedProcess,
    ProcessRecord,
    is_ours,
    port_open,
    readiness_ports,
    recorded_status,
    recorded_supervisor,
)
from lab.plan import LabPlan

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab


def qkdsdn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, COLUMNS="200"),
    )


@contextmanager
def twin(state: Path, *options: str) -> Iterator[list[ManagedProcess]]:
    """A triangle twin from `lab up`; every process it ever ran is collected in the list,
    and `lab down` runs at the end whatever happens (the test checks what it left)."""
    up = qkdsdn("lab", "up", "triangle", "--state-dir", str(state), *options)
    seen: list[ManagedProcess] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        seen.extend(r.process for r in recorded_status(state))
        yield seen
    finally:
        if (state / "pids.json").exists():
            qkdsdn("lab", "down", "--state-dir", str(state))


def wait_for(
    what: str, check: Callable[[], ProcessRecord | None], timeout: float = 60.0
) -> ProcessRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def entry(state: Path, name: str) -> ProcessRecord:
    return next(r for r in recorded_status(state) if r.process.name == name)


def restarted(state: Path, name: str, old_pid: int) -> Callable[[], ProcessRecord | None]:
    def check() -> ProcessRecord | None:
        now = entry(state, name)
        ok = now.state == "running" and now.process.pid != old_pid and is_ours(now.process)
        return now if ok else None

    return check


def status_row(state: Path, name: str) -> list[str]:
    status = qkdsdn("lab", "status", "--state-dir", str(state))
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip("│┃ ").split("│")]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_killed_key_manager_is_restarted_and_lab_status_counts_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with twin(state) as seen:
        km1 = entry(state, "km-qnode1").process
        began = time.monotonic()
        os.kill(km1.pid, signal.SIGKILL)
        again = wait_for("km-qnode1 restarted", restarted(state, "km-qnode1", km1.pid), 30)
        seen.append(again.process)
        assert time.monotonic() - began < 30
        assert again.restarts == 1 and again.last_exit == -signal.SIGKILL
        node = LabPlan.load(state / "plan.json").node("qnode1")
        # Shown running only once it listens on every port (starting before that).
        plan = LabPlan.load(state / "plan.json")
        assert all(port_open(a) for a in readiness_ports(plan, "km-qnode1"))
        wait_for(
            "km-qnode1 listening",
            lambda: again if listening(node.km_etsi014_port) else None,
        )
        row = status_row(state, "km-qnode1")
        assert row[1:5] == [str(again.process.pid), "running", "1", "-9"], row
        assert "km-qnode1 restarted" in (state / "logs" / "supervisor.log").read_text()

        # An operator restarts another part by hand, through the supervisor.
        km2 = entry(state, "km-qnode2").process
        by_hand = qkdsdn("lab", "restart", "km-qnode2", "--state-dir", str(state))
        assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
        assert "listening" in by_hand.stdout
        new_km2 = entry(state, "km-qnode2")
        assert new_km2.process.pid != km2.pid and new_km2.restarts == 1
        assert is_ours(new_km2.process) and not is_ours(km2)
        seen.append(new_km2.process)

        unknown = qkdsdn("lab", "restart", "km-qnode9", "--state-dir", str(state))
        assert unknown.returncode == 1 and "no process 'km-qnode9'" in unknown.stderr

        began = time.monotonic()
        down = qkdsdn("lab", "down", "--state-dir", str(state))
        took = time.monotonic() - began
    assert down.returncode == 0, down.stderr
    assert "SIGKILL" not in down.stdout, down.stdout
    assert took < 30, f"lab down took {took:.1f} s"
    assert not any(is_ours(p) for p in seen), "a process of the lab survived lab down"
    assert recorded_status(state) == [] and recorded_supervisor(state) is None


def test_a_process_that_keeps_dying_is_marked_failed_after_the_limit(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with twin(state, "--restart-limit", "2") as seen:
        km3 = entry(state, "km-qnode3").process
        port = LabPlan.load(state / "plan.json").node("qnode3").km_etsi014_port
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            os.kill(km3.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while True:  # its port, taken while it is down: every restart fails to bind
                try:
                    squatter.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            squatter.listen()

            def gave_up() -> ProcessRecord | None:
                now = entry(state, "km-qnode3")
                return now if now.state == "failed" else None

            failed = wait_for("km-qnode3 failed", gave_up, 90)
        assert failed.restarts == 2 and failed.last_exit not in (None, 0)
        assert "3 times within 60 s" in failed.reason
        assert "Address already in use" in (state / "logs" / "km-qnode3.log").read_text()
        row = status_row(state, "km-qnode3")
        assert row[2].startswith("failed") and row[3] == "2", row
        # The rest of the twin runs on.
        assert all(is_ours(r.process) for r in recorded_status(state) if r.state == "running")
        seen.extend(r.process for r in recorded_status(state))
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert not any(is_ours(p) for p in seen)


def test_lab_down_after_the_supervisor_was_killed_still_stops_everything(tmp_path: Path) -> None:
    """Its restarted key manager too, and one restarted by hand once it was gone."""
    state = tmp_path / "state"
    with twin(state) as seen:
        km1 = entry(state, "km-qnode1").process
        os.kill(km1.pid, signal.SIGKILL)
        again = wait_for("km-qnode1 restarted", restarted(state, "km-qnode1", km1.pid), 30)
        seen.append(again.process)
        supervisor = recorded_supervisor(state)
        assert supervisor is not None and is_ours(supervisor)
        os.kill(supervisor.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while is_ours(supervisor):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "no supervisor" in qkdsdn("lab", "status", "--state-dir", str(state)).stdout
        # Restarted by hand without a supervisor: recorded, so lab down stops it too.
        km2 = entry(state, "km-qnode2").process
        by_hand = qkdsdn("lab", "restart", "km-qnode2", "--state-dir", str(state))
        assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
        assert "without a supervisor" in by_hand.stdout
        new_km2 = entry(state, "km-qnode2")
        assert new_km2.restarts == 1 and new_km2.process.pid != km2.pid
        assert is_ours(new_km2.process) and not is_ours(km2)
        seen.append(new_km2.process)
        down = qkdsdn("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "km-qnode1" in down.stdout and "SIGKILL" not in down.stdout, down.stdout
    assert not any(is_ours(p) for p in seen), "a process of the lab survived lab down"


def test_a_twin_that_cannot_become_ready_fails_lab_up_and_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = qkdsdn("lab", "up", "triangle", "--state-dir", str(state), "--timeout", "0.01")
    assert up.returncode == 1
    assert "lab up failed" in up.stdout and "not ready after" in up.stdout, up.stdout
    assert recorded_status(state) == [] and recorded_supervisor(state) is None
    log = (state / "logs" / "supervisor.log").read_text()
    assert "start failed" in log
