"""The twin's supervisor: starts its processes, restarts one that dies, stops them all on SIGTERM.

Run by `lab up` as `qkdsdn lab supervise --state-dir DIR` (detached, logging to
logs/supervisor.log). It waits on its children's exits through pidfds; what to do on an exit
(restart after a backoff, or give up) is decided by lab.restarts. Every change is written to
STATE_DIR/pids.json, which `lab status` shows. Control: SIGTERM (or SIGINT) stops the twin and
the supervisor; SIGUSR1 makes it read restart requests from STATE_DIR/control/ (written by
`lab restart`): signals and files in the state directory, so only its owner can ask.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from lab.hosts import hosts_of
from lab.launcher import (
    SIGKILLED,
    LabError,
    ProcessRecord,
    launch,
    port_open,
    readiness_ports,
    record,
    spawn_on,
)
from lab.plan import LabPlan
from lab.processes import ManagedProcess, log_path, stop_processes
from lab.restarts import Child, ChildState, RestartPolicy

log = logging.getLogger("qkdsdn.supervisor")

CONTROL_DIR = "control"


class _Interrupted(Exception):
    """SIGTERM or SIGINT during the start: launch() stops what it started."""


@dataclass
class _Running:
    process: ManagedProcess
    popen: subprocess.Popen[bytes]
    pidfd: int


READINESS_POLL_S = 0.1  # how often a starting process is checked for listening


class Supervisor:
    def __init__(self, plan: LabPlan, policy: RestartPolicy, grace: float = 10.0) -> None:
        self.plan = plan
        self.state_dir = Path(plan.state_dir)
        self.policy = policy
        self.grace = grace
        self.hosts = hosts_of(self.state_dir)  # a restart runs where the first start did
        self.commands: dict[str, tuple[str, ...]] = {}
        self.children: dict[str, Child] = {}
        self.running: dict[str, _Running] = {}
        self.last: dict[str, ManagedProcess] = {}  # the latest process of each name
        self.selector = selectors.DefaultSelector()
        self.starting = True
        self.stopping = False
        self.requests = False
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_read = wake_read
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            self.requests = True
            return
        self.stopping = True
        if self.starting:
            raise _Interrupted

    # ------------------------------------------------------------ start

    def start(self, timeout: float, ready_fd: int | None) -> int:
        """Starts the twin; reports progress and the outcome on `ready_fd` (one JSON a line)."""
        notify = _Notifier(ready_fd)
        try:
            started = launch(
                self.plan,
                timeout,
                progress=lambda name: notify.send({"started": name}),
                new_session=False,
                hosts=self.hosts,
            )
        except _Interrupted:
            log.info("stopped during the start")
            notify.send({"failed": "interrupted during the start"})
            return 1
        except (LabError, OSError) as error:
            log.error("start failed: %s", error)
            notify.send({"failed": str(error)})
            return 1
        finally:
            self.starting = False  # a SIGTERM from now on only sets `stopping`
        for process, popen in started:
            self.commands[process.name] = process.argv
            self._watch(process, popen)
            self.children[process.name] = Child(process.name)
        self._write_status()
        log.info("twin %s is up: %s", self.plan.name, ", ".join(self.children))
        notify.send({"ready": True})
        notify.close()
        return 0

    # ------------------------------------------------------------ loop

    def run(self) -> int:
        """Watches until asked to stop; then stops the twin in waves and returns 0."""
        while not self.stopping:
            now = time.monotonic()
            waits = [c.restart_at - now for c in self.children.values() if c.restart_at]
            if any(c.state is ChildState.STARTING for c in self.children.values()):
                waits.append(READINESS_POLL_S)  # look again whether it listens
            timeout = max(0.0, min(waits)) if waits else None
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    _drain(self.wake_read)
                else:
                    self._exited(str(key.data))
            if self.requests:
                self.requests = False
                self._serve_requests()
            now = time.monotonic()
            for name, child in list(self.children.items()):
                if child.due(now) and not self.stopping:
                    self._start_again(name)
            self._check_listening()
        self._stop_all()
        return 0

    def _watch(self, process: ManagedProcess, popen: subprocess.Popen[bytes]) -> None:
        pidfd = os.pidfd_open(process.pid)
        self.running[process.name] = _Running(process, popen, pidfd)
        self.last[process.name] = process
        self.selector.register(pidfd, selectors.EVENT_READ, process.name)

    def _unwatch(self, name: str) -> int:
        """Forgets an exited child (reaped); returns its exit code."""
        entry = self.running.pop(name)
        self.selector.unregister(entry.pidfd)
        os.close(entry.pidfd)
        return entry.popen.wait()

    def _exited(self, name: str) -> None:
        code = self._unwatch(name)
        child = self.children[name].exited(code, time.monotonic(), self.policy, expected=False)
        self.children[name] = child
        if child.state is ChildState.FAILED:
            log.error("%s exited with code %s: %s; it stays down", name, code, child.reason)
        else:
            log.warning("%s: %s", name, child.reason)
        self._write_status()

    def _start_again(self, name: str) -> None:
        argv = self.commands[name]
        try:
            popen = spawn_on(self.hosts, self.plan, name, argv, new_session=False)
        except OSError as error:
            log.error("%s could not be started: %s", name, error)
            self.children[name] = self.children[name].exited(
                127, time.monotonic(), self.policy, expected=False
            )
            self._write_status()
            return
        process = ManagedProcess(name, popen.pid, argv, str(log_path(self.state_dir, name)))
        self._watch(process, popen)
        self.children[name] = self.children[name].started_again()
        log.info("%s restarted: pid %d (restart %d)", name, popen.pid, self.children[name].restarts)
        self._write_status()

    def _check_listening(self) -> None:
        """Marks running each started-again process that now listens on all its ports."""
        changed = False
        for name, child in list(self.children.items()):
            if (
                child.state is ChildState.STARTING
                and name in self.running
                and all(port_open(a) for a in readiness_ports(self.plan, name))
            ):
                self.children[name] = child.listening()
                log.info("%s listens again", name)
                changed = True
        if changed:
            self._write_status()

    # ------------------------------------------------------------ requests

    def _serve_requests(self) -> None:
        control = self.state_dir / CONTROL_DIR
        for request in sorted(control.glob("*.request")):
            try:
                name = str(json.loads(request.read_text())["restart"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                answer = {"ok": False, "message": f"unreadable request: {error}"}
            else:
                answer = self._restart_by_hand(name)
            _write_json(request.with_suffix(".answer"), answer)
            request.unlink(missing_ok=True)

    def _restart_by_hand(self, name: str) -> dict[str, object]:
        if name not in self.children:
            known = ", ".join(self.children)
            return {"ok": False, "message": f"no process {name!r}; known: {known}"}
        log.info("%s: restart asked by the operator", name)
        if name in self.running:
            stop_processes([self.running[name].process], self.grace, collect=_none)
            code = self._unwatch(name)
            self.children[name] = self.children[name].exited(
                code, time.monotonic(), self.policy, expected=True
            )
        self.children[name] = self.children[name].asked_to_restart()
        self._start_again(name)
        entry = self.running.get(name)
        if entry is None:
            return {"ok": False, "message": f"{name} could not be started again"}
        return {"ok": True, "pid": entry.process.pid, "message": f"{name} restarted"}

    # ------------------------------------------------------------ stop

    def _stop_all(self) -> None:
        log.info("stopping the twin")
        began = time.monotonic()
        entries = {e.process.name: e for e in self.running.values()}
        report = stop_processes([e.process for e in entries.values()], self.grace, collect=_none)
        now = time.monotonic()
        for name in list(self.running):
            code = self._unwatch(name)
            child = self.children[name].exited(code, now, self.policy, expected=True)
            if name in report.killed:
                child = replace(child, reason=SIGKILLED)
            self.children[name] = child
        for name, child in self.children.items():
            if child.state is ChildState.RESTARTING:  # it stays down: no restart is due now
                self.children[name] = replace(child, state=ChildState.STOPPED, restart_at=None)
        self._write_status()
        if report.killed:
            log.warning("SIGKILLed after %g s: %s", self.grace, ", ".join(report.killed))
        log.info(
            "stopped in %.2f s: %s",
            time.monotonic() - began,
            ", ".join(report.stopped) or "nothing",
        )

    def _write_status(self) -> None:
        record(
            self.state_dir,
            [
                ProcessRecord(
                    self.last[name],
                    state=child.state.value,
                    restarts=child.restarts,
                    last_exit=child.last_exit,
                    reason=child.reason,
                )
                for name, child in self.children.items()
            ],
        )


def _none(process: ManagedProcess) -> None:
    """The supervisor reaps its children through their Popen (keeps the exit code)."""


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class _Notifier:
    """Startup messages to `lab up`; it may be gone (Ctrl-C), which the twin survives."""

    def __init__(self, fd: int | None) -> None:
        self.handle = os.fdopen(fd, "w") if fd is not None else None

    def send(self, message: dict[str, object]) -> None:
        if self.handle is None:
            return
        try:
            self.handle.write(json.dumps(message) + "\n")
            self.handle.flush()
        except OSError:
            self.handle = None

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None


def supervise(
    state_dir: Path,
    timeout: float = 60.0,
    ready_fd: int | None = None,
    policy: RestartPolicy | None = None,
    grace: float = 10.0,
) -> int:
    """The supervisor process's main: start the twin of STATE_DIR/plan.json, watch, stop."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s supervisor: %(message)s"
    )
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    plan = LabPlan.load(state_dir / "plan.json")
    supervisor = Supervisor(plan, policy or RestartPolicy(), grace)
    if supervisor.start(timeout, ready_fd) != 0:
        return 1
    return supervisor.run()
