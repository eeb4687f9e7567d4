"""CPU cost of YANG-push periodic subscriptions on an agents process, against none.

    .venv/bin/python bench/yang_push.py [--subscriptions 10] [--window 20] [--json FILE]

The real agent program (`lab.cli agent run`) hosts a triangle in a child process. The
agents process's CPU (from /proc) is measured over the same window in three phases, in one
run: (1) no client at all (the baseline: the emulated nodes' own work); (2) N idle NETCONF
sessions on node n0; (3) the same N sessions each with a periodic 1 s subscription to the
whole operational datastore (no filter: the biggest update). The notifications received in
phase 3 are counted, so the cost per update follows. Clients (ncclient) run in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import tempfile
import time
from typing import Any

import ncclient.transport.session
from lxml import etree

from bench.netconf_get import HostedAgents, cpu_times, plain_ncclient, ring
from tests.harness.agents import make_test_plan
from tests.harness.configs import addresses_from_plan

SN = "urn:ietf:params:xml:ns:yang:ietf-subscribed-notifications"
EVERY_SECOND = f"""
<establish-subscription xmlns="{SN}" xmlns:yp="urn:ietf:params:xml:ns:yang:ietf-yang-push"
    xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores">
  <yp:datastore>ds:operational</yp:datastore>
  <yp:periodic><yp:period>100</yp:period></yp:periodic>
</establish-subscription>"""


def cpu_share(pids: list[int], window_s: float) -> float:
    """The agents processes' CPU over `window_s`, as a share of one core."""
    before = sum(cpu_times(pid).total_s for pid in pids)
    started = time.monotonic()
    time.sleep(window_s)  # a measurement window, not a wait for a condition
    after = sum(cpu_times(pid).total_s for pid in pids)
    return (after - before) / (time.monotonic() - started)


def drain(sessions: list[Any]) -> int:
    count = 0
    for session in sessions:
        while session.take_notification(block=False) is not None:
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    ncclient.transport.session.TICK = 0.002
    with tempfile.TemporaryDirectory() as directory:
        plan = make_test_plan(Path(directory), *ring(3))
        address = addresses_from_plan(plan)[0]
        with HostedAgents(plan, 1) as agents:
            time.sleep(3.0)  # let the links' first key distillation settle before measuring
            baseline = cpu_share(agents.pids, args.window)
            sessions = [plain_ncclient(address) for _ in range(args.subscriptions)]
            try:
                idle = cpu_share(agents.pids, args.window)
                for session in sessions:
                    session.dispatch(etree.fromstring(EVERY_SECOND))
                drain(sessions)
                started = time.monotonic()
                subscribed = cpu_share(agents.pids, args.window)
                updates = drain(sessions)
                elapsed = time.monotonic() - started
            finally:
                for session in sessions:
                    session.close_session()
            after = cpu_share(agents.pids, args.window)
    extra = subscribed - idle
    figures = {
        "subscriptions": args.subscriptions,
        "window_s": args.window,
        "cpu_share_no_client": baseline,
        "cpu_share_idle_sessions": idle,
        "cpu_share_subscribed": subscribed,
        "cpu_share_no_client_after": after,
        "updates_received": updates,
        "updates_per_s": updates / elapsed,
        "extra_cpu_share": extra,
        "cpu_ms_per_update": extra / (updates / elapsed) * 1000 if updates else None,
    }
    print(f"agents process (triangle), CPU share of one core over {args.window:.0f} s each:")
    print(f"  no client                          {baseline * 100:6.2f} %")
    print(f"  {args.subscriptions} idle sessions                   {idle * 100:6.2f} %")
    print(
        f"  {args.subscriptions} sessions x periodic 1 s          {subscribed * 100:6.2f} %"
        f"   ({updates} push-updates, {updates / elapsed:.1f}/s)"
    )
    print(f"  no client again                    {after * 100:6.2f} %")
    if updates:
        print(
            f"  cost: +{extra * 100:.2f} % of a core, {figures['cpu_ms_per_update']:.2f} ms/update"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
