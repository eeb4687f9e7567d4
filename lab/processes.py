"""The lab's processes at OS level: start one, tell ours from others, stop them in waves.

A process is ours while its PID still runs the command line we started (PIDs get reused).
Stopping waits on process exits through pidfds (no polling sleeps) and signals through them,
so a PID reused after the check is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ManagedProcess:
    name: str  # "agents", "km-qnode1", "controller"
    pid: int
    argv: tuple[str, ...]
    log: str


@dataclass(frozen=True)
class StopReport:
    stopped: list[str] = field(default_factory=list)  # names that were running and now are not
    killed: list[str] = field(default_factory=list)  # of those, the ones SIGTERM did not end


def spawn(
    name: str,
    argv: Sequence[str],
    state_dir: Path,
    *,
    new_session: bool,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Starts `argv` with its output appended to logs/NAME.log and its trace to trace/NAME.jsonl.

    `new_session`: the process leaves the caller's terminal session (Ctrl-C of the user
    reaches the caller, which then stops its processes in order)."""
    for folder in ("logs", "trace"):
        (state_dir / folder).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QKDSDN_TRACE_FILE=str(state_dir / "trace" / f"{name}.jsonl"))
    with open(log_path(state_dir, name), "ab") as log_handle:
        return subprocess.Popen(
            list(argv),
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=new_session,
            pass_fds=tuple(pass_fds),
        )


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [c.decode(errors="replace") for c in raw.split(b"\0") if c]


def is_ours(process: ManagedProcess) -> bool:
    """True while the PID still runs the command line we started (PIDs get reused)."""
    return _cmdline(process.pid) == list(process.argv)


def running_with(argvs: dict[tuple[str, ...], str]) -> list[ManagedProcess]:
    """Every process on the host running exactly one of `argvs` (argv -> name).

    The lab's command lines name its state directory's files, so they are ours alone; this
    finds a child that a crashed supervisor started but had not yet recorded."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = _cmdline(int(entry.name))
            if cmdline and tuple(cmdline) in argvs:
                name = argvs[tuple(cmdline)]
                found.append(ManagedProcess(name, int(entry.name), tuple(cmdline), ""))
    return found


def _is_controller(name: str) -> bool:
    return name == "controller" or name.startswith("controller-")


def waves(processes: Sequence[ManagedProcess]) -> list[list[ManagedProcess]]:
    """Stop order: the controllers first (so they do not see the nodes die and re-route),
    then the key managers, then the agents (and anything else)."""
    return [
        [p for p in processes if _is_controller(p.name)],
        [p for p in processes if p.name.startswith(("km-", "kms-"))],
        [
            p
            for p in processes
            if not _is_controller(p.name) and not p.name.startswith(("km-", "kms-"))
        ],
    ]


@contextlib.contextmanager
def _pidfds(processes: Sequence[ManagedProcess]) -> Iterator[dict[int, ManagedProcess]]:
    """pidfd -> process for those still ours (opened first, then checked: no reuse race)."""
    fds: dict[int, ManagedProcess] = {}
    try:
        for proc in processes:
            try:
                fd = os.pidfd_open(proc.pid)
            except OSError:
                continue
            if is_ours(proc):
                fds[fd] = proc
            else:
                os.close(fd)
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def wait_exits(fds: Sequence[int], deadline: float) -> set[int]:
    """Waits until every pidfd's process has exited or the deadline passes; returns the fds
    of those still running."""
    pending = set(fds)
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            pending.discard(fd)
            poller.unregister(fd)
    return pending


def reap(pid: int) -> None:
    """Collects a child of ours that has exited, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(fd: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(fd, signum)


def stop_processes(
    processes: Sequence[ManagedProcess],
    grace: float = 5.0,
    collect: Callable[[ManagedProcess], None] = lambda proc: reap(proc.pid),
) -> StopReport:
    """Stops the processes that are still ours, wave by wave: SIGTERM, wait up to `grace`
    seconds for each wave to exit, SIGKILL only what is still running then. `collect` is
    called for each once it has exited (by default: reap it if it is our child)."""
    report = StopReport()
    for wave in waves(processes):
        with _pidfds(wave) as fds:
            for fd in fds:
                _signal(fd, signal.SIGTERM)
            late = wait_exits(list(fds), time.monotonic() + grace)
            for fd in late:
                _signal(fd, signal.SIGKILL)
            wait_exits(list(late), time.monotonic() + 5.0)
            for fd, proc in fds.items():
                collect(proc)
                report.stopped.append(proc.name)
                if fd in late:
                    report.killed.append(proc.name)
    return report
