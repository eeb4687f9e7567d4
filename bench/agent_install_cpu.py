"""One agent's CPU per install and withdraw, our code alone: the NETCONF bytes one node receives
during real installs, replayed into a fresh agent's session (real datastore, NACM, audit).

    .venv/bin/python bench/agent_install_cpu.py [--installs 10] [--rounds 7] [--save F | --load F]

Records what the middle node of c0-c1-c2 receives while the controller (in this process)
installs and withdraws a 2-hop intent `--installs` times, then feeds those bytes to a new
session of a fresh agent `--rounds` times and prints the thread CPU µs per install+withdraw
(4 RPCs each: lock, edit, commit, unlock). Compare trees by running it with each on
PYTHONPATH. On a busy machine count instructions instead of time: run it under
`valgrind --tool=callgrind --instr-atstart=no` with QKDSDN_BENCH_CALLGRIND=1 (collection is
switched on only around the replays) once with `--rounds 1` and once with `--rounds 2`: the
difference is one round's instructions, which the machine's load does not change.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import itertools
import json
import os
import pickle
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agents.netconf import session as netconf_session
from controller.model import IntentState, KeyRequest
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import controller_from_plan

NAMES = ["c0", "c1", "c2"]
NODE = "c1"
Chunks = list[tuple[str, bytes]]  # (user name, bytes received)


class _Sink:
    """A transport that keeps nothing but counts replies holding errors."""

    def __init__(self) -> None:
        self.errors = 0

    def write(self, data: bytes) -> None:
        self.errors += b"rpc-error" in data

    def close(self) -> None:
        return None


@contextmanager
def _recording(target: object, chunks: Chunks) -> Iterator[None]:
    """Keeps what every new session of the agent `target` receives."""
    session_class = netconf_session.Session
    start, received = session_class.start, session_class.data_received

    def recording_start(self: Any) -> None:
        self.recorded = self.agent is target
        start(self)

    def recording_received(self: Any, data: bytes) -> None:
        if getattr(self, "recorded", False):
            chunks.append((self.info.username, bytes(data)))
        received(self, data)

    session_class.start = recording_start  # type: ignore[method-assign]
    session_class.data_received = recording_received  # type: ignore[method-assign]
    try:
        yield
    finally:
        session_class.start = start  # type: ignore[method-assign]
        session_class.data_received = received  # type: ignore[method-assign]


async def record(installs: int) -> Chunks:
    chunks: Chunks = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_test_plan(Path(tmp), NAMES, list(itertools.pairwise(NAMES)))
        async with running_agents(plan, persist=False) as agents:
            with _recording(agents[NODE].netconf._agent, chunks):
                controller = controller_from_plan(plan, poll_interval=60.0)
                await controller.start()
                try:
                    snap = controller.topology()
                    request = KeyRequest(snap.resolve("c0"), snap.resolve("c2"), "a", ("b",))
                    for _ in range(installs):
                        intent = await controller.install(request)
                        assert intent.state is IntentState.INSTALLED, intent.reason
                        await controller.withdraw(intent.intent_id)
                finally:
                    await controller.stop()
    return chunks


def _callgrind(on: bool) -> None:
    if os.environ.get("QKDSDN_BENCH_CALLGRIND"):
        state = "on" if on else "off"
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True)


async def replay(chunks: Chunks, rounds: int) -> tuple[list[float], int]:
    """Thread CPU seconds of each replay, and the replies that held errors (should be 0)."""
    times: list[float] = []
    sink = _Sink()
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_test_plan(Path(tmp), NAMES, list(itertools.pairwise(NAMES)))
        async with running_agents(plan, persist=False) as agents:
            agent = agents[NODE].netconf._agent
            for _ in range(rounds):
                session = netconf_session.Session(agent, sink, username=chunks[0][0])
                session.start()
                _callgrind(True)
                started = time.thread_time()
                for _, data in chunks:
                    session.data_received(data)
                times.append(time.thread_time() - started)
                _callgrind(False)
                session.close()
    return times, sink.errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--save", type=Path, help="keep the recorded bytes here")
    parser.add_argument("--load", type=Path, help="replay bytes recorded before")
    args = parser.parse_args()
    if args.load:
        installs, chunks = pickle.loads(args.load.read_bytes())
    else:
        installs, chunks = args.installs, asyncio.run(record(args.installs))
        if args.save:
            args.save.write_bytes(pickle.dumps((installs, chunks)))
    times, errors = asyncio.run(replay(chunks, args.rounds))
    per_install_us = [t / max(installs, 1) * 1e6 for t in times]
    figures = {
        "installs": installs,
        "replies_with_errors": errors,
        "cpu_us_per_install_withdraw_best": round(min(per_install_us)),
        "cpu_us_per_install_withdraw_median": round(statistics.median(per_install_us)),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
