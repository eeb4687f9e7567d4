"""Stopping the lab's processes: waves in order, SIGKILL only after the grace, never a stranger."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from lab.processes import ManagedProcess, is_ours, running_with, spawn, stop_processes

# Appends its name to a file on SIGTERM and exits; prints "up" once the handler is set.
POLITE = """
import signal, sys, time
def bye(*_):
    with open(sys.argv[2], "a") as f:
        f.write(sys.argv[1] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("up", flush=True)
while True:
    time.sleep(60)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
while True:
    time.sleep(60)
"""


def _start(tmp: Path, name: str, code: str, *args: str) -> ManagedProcess:
    argv = (sys.executable, "-c", code, name, *args)
    popen = spawn(name, argv, tmp, new_session=True)
    log = tmp / "logs" / f"{name}.log"
    deadline = time.monotonic() + 30
    while "up" not in (log.read_text() if log.exists() else ""):
        assert popen.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.02)
    return ManagedProcess(name, popen.pid, argv, str(log))


def test_processes_stop_in_waves_controller_then_key_managers_then_agents(tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    procs = [
        _start(tmp_path, name, POLITE, str(order)) for name in ("agents", "km-a", "controller")
    ]
    report = stop_processes(procs, grace=10.0)
    assert order.read_text().split() == ["controller", "km-a", "agents"]
    assert sorted(report.stopped) == ["agents", "controller", "km-a"] and report.killed == []
    assert not any(is_ours(p) for p in procs)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_only(tmp_path: Path) -> None:
    stubborn = _start(tmp_path, "km-stubborn", STUBBORN)
    polite = _start(tmp_path, "km-polite", POLITE, str(tmp_path / "order.txt"))
    began = time.monotonic()
    report = stop_processes([stubborn, polite], grace=0.5)
    assert time.monotonic() - began >= 0.5
    assert report.killed == ["km-stubborn"]
    assert sorted(report.stopped) == ["km-polite", "km-stubborn"]
    assert not is_ours(stubborn) and not is_ours(polite)


def test_a_pid_running_another_command_line_is_never_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        recorded = ManagedProcess("km-x", stranger.pid, ("python", "something-else"), "")
        assert not is_ours(recorded)
        assert stop_processes([recorded], grace=0.1).stopped == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_running_with_finds_processes_by_their_exact_command_line(tmp_path: Path) -> None:
    proc = _start(tmp_path, "km-found", POLITE, str(tmp_path / "order.txt"))
    try:
        found = running_with({proc.argv: proc.name, ("no", "such"): "km-none"})
        assert [(p.name, p.pid) for p in found] == [("km-found", proc.pid)]
    finally:
        stop_processes([proc])
