"""`lab restart NAME`: one process of a running twin restarted by hand, through its supervisor.

The request is a file in STATE_DIR/control/ and a SIGUSR1 to the supervisor (only the state
directory's owner can do either); the supervisor stops the process, starts its command again
and answers in a file. Without a supervisor the launcher restarts it and records the new PID,
so `lab down` stops it all the same.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

from lab.launcher import (
    LabError,
    recorded_processes,
    restart_unsupervised,
    supervisor_running,
    wait_listening,
)
from lab.plan import LabPlan
from lab.processes import ManagedProcess, is_ours
from lab.supervisor import CONTROL_DIR


class RestartError(RuntimeError):
    """The process could not be restarted; the message says why."""


def restart_process(state_dir: Path, name: str, timeout: float = 60.0) -> str:
    """Restarts process `name` and waits until it listens again; returns what was done."""
    plan_file = state_dir / "plan.json"
    if not plan_file.exists():
        raise RestartError(f"no twin in {state_dir} (no plan.json)")
    plan = LabPlan.load(plan_file)
    before = {p.name: p.pid for p in recorded_processes(state_dir)}
    if name not in before:
        raise RestartError(f"no process {name!r} in {state_dir}; known: {', '.join(before)}")
    supervisor = supervisor_running(state_dir)
    try:
        if supervisor is not None:
            _ask(state_dir, supervisor, name, timeout)
            how = f"by the supervisor (pid {supervisor.pid})"
        else:
            restart_unsupervised(state_dir, name)
            how = "without a supervisor: nothing restarts it if it dies"
        process = next(p for p in recorded_processes(state_dir) if p.name == name)
        wait_listening(plan, process, timeout)
    except LabError as error:
        raise RestartError(str(error)) from error
    return f"{name} restarted {how}: pid {before[name]} -> {process.pid}, listening"


def _ask(state_dir: Path, supervisor: ManagedProcess, name: str, timeout: float) -> None:
    control = state_dir / CONTROL_DIR
    control.mkdir(mode=0o700, exist_ok=True)
    token = secrets.token_hex(8)
    request, answer = control / f"{token}.request", control / f"{token}.answer"
    tmp = control / f".{token}.tmp"
    tmp.write_text(json.dumps({"restart": name}))
    tmp.replace(request)
    pidfd = os.pidfd_open(supervisor.pid)  # opened, then checked: a reused PID is never signalled
    try:
        if not is_ours(supervisor):
            request.unlink()
            raise RestartError("the supervisor has just exited")
        signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
    finally:
        os.close(pidfd)
    deadline = time.monotonic() + timeout
    while not answer.exists():  # the supervisor answers within its stop grace + a start
        if time.monotonic() > deadline:
            request.unlink(missing_ok=True)
            raise RestartError(f"the supervisor did not answer within {timeout:.0f} s")
        time.sleep(0.05)
    reply = json.loads(answer.read_text())
    answer.unlink()
    if not reply.get("ok"):
        raise RestartError(str(reply.get("message")))
