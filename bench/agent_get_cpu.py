"""Instructions the agent program spends per NETCONF <get>, counted by valgrind (load-independent).

    .venv/bin/python bench/agent_get_cpu.py [--agents 2] [--gets 200] [--json FILE]

Runs the real agent program (`lab.cli agent run`, a ring of --agents nodes, as `lab up`
hosts them) under `valgrind --tool=callgrind --instr-atstart=no`, and one light NETCONF
session of the controller's account against the first node (SSH, NACM and all). Counting is
switched on only while the session sends its gets; each figure is the count of a run of
--gets + 50 gets minus that of a run of 50 (the session's set-up cancels out), divided by
--gets. The program's background work (timers), counted over 10 s with no session, is
taken out at its rate per second. The machine's load does not change these counts: compare
trees with them (run this script of each tree with its own PYTHONPATH).

The figure: a <get> of the whole qkd_node (the controller's). The baseline of the same run: a
<get> of the node's qkdn_id leaf alone (the same SSH, session, dispatch and access control,
almost no tree). Needs valgrind (apt install valgrind).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import functools
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from agents.netconf.framing import FramingMode, encode_message
from bench import _light_netconf as light
from bench.netconf_get import HostedAgents, login_from, ring, spawned
from controller.names import QKD_NS
from tests.harness.agents import make_test_plan
from tests.harness.configs import addresses_from_plan

SET_UP_GETS = 50
IDLE_S = 10  # seconds of no session, to take the background work out of the gets' counts
LEAF_RPC = (
    '<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get>'
    f'<filter type="subtree"><qkd_node xmlns="{QKD_NS}"><qkdn_id/></qkd_node></filter>'
    "</get></rpc>"
).encode()
READY_UNDER_VALGRIND_S = 900.0  # the program starts some 50x slower under callgrind
CHILD_TIMEOUT_S = 900.0


def _control(pid: int, *args: str) -> str:
    done = subprocess.run(
        ["callgrind_control", *args, str(pid)], check=True, capture_output=True, text=True
    )
    return done.stdout


def _counted(pid: int, dump: Path, run: Callable[[], object]) -> tuple[int, float]:
    """Instructions of the program and seconds while `run()` runs."""
    _control(pid, "-z")
    _control(pid, "-i", "on")
    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    _control(pid, "-i", "off")
    return _dumped(pid, dump), elapsed


def _session(port: int, login: light.Login, request: bytes, gets: int) -> None:
    """`gets` round trips of a new light session sending `request`."""
    with spawned(light.light_latency, port, login, gets, 0, request) as child:
        child.receive("samples", CHILD_TIMEOUT_S)


def _dumped(pid: int, dump: Path) -> int:
    before = set(dump.parent.glob(dump.name + "*"))
    _control(pid, "-d")
    written = sorted(set(dump.parent.glob(dump.name + "*")) - before)
    if not written:
        raise RuntimeError("callgrind wrote no dump")
    match = re.search(r"^totals: (\d+)", written[-1].read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {written[-1]}")
    return int(match.group(1))


def measure(agents: int, gets: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        plan = make_test_plan(Path(directory), *ring(agents))
        address = addresses_from_plan(plan)[0]
        login = login_from(plan, address)
        dump = Path(directory) / "callgrind.out"
        wrapper = (
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={dump}.%p",
        )
        with HostedAgents(plan, 1, wrapper, READY_UNDER_VALGRIND_S) as hosted:
            pid = hosted.pids[0]
            # the valgrind process execs python: the pid is the program's
            figures: dict[str, Any] = {"agents": agents, "gets": gets}
            requests = {
                "whole_qkd_node": light.GET_FRAMED,
                "qkdn_id_leaf": encode_message(LEAF_RPC, FramingMode.CHUNKED),
            }
            port = address.port
            for request in requests.values():  # warm-up, not counted: caches, first imports
                _session(port, login, request, SET_UP_GETS)
            idle, idle_s = _counted(pid, dump, lambda: time.sleep(IDLE_S))
            per_s = idle / idle_s  # timers (RESTCONF ticks, performance updates) run meanwhile
            figures["background_instructions_per_s"] = per_s
            for name, request in requests.items():
                short, short_s = _counted(
                    pid, dump, functools.partial(_session, port, login, request, SET_UP_GETS)
                )
                long, long_s = _counted(
                    pid, dump, functools.partial(_session, port, login, request, SET_UP_GETS + gets)
                )
                spent = (long - per_s * long_s) - (short - per_s * short_s)
                figures[f"{name}_instructions_per_get"] = spent / gets
    figures["ratio_whole_to_leaf"] = (
        figures["whole_qkd_node_instructions_per_get"]
        / figures["qkdn_id_leaf_instructions_per_get"]
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=2, help="nodes of the ring (one process)")
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = measure(args.agents, args.gets)
    whole = figures["whole_qkd_node_instructions_per_get"]
    leaf = figures["qkdn_id_leaf_instructions_per_get"]
    print(f"<get> of the whole qkd_node: {whole / 1000:,.0f} k instructions")
    print(f"baseline, <get> of qkdn_id alone: {leaf / 1000:,.0f} k instructions")
    print(f"ratio whole/leaf: {figures['ratio_whole_to_leaf']:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
