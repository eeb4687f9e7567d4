"""`qkdsdn lab up | down | status | run | fault`: operating a twin from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.table import Table

from common.console import console as terminal

DEFAULT_STATE_DIR = Path("state")
DEFAULT_OUT_DIR = Path("out")


def register_operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser("up", help="start a twin in the background and write endpoints.json")
    up.add_argument("topology", nargs="?", default="triangle", help="file or packaged name")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument(
        "--force-path",
        action="append",
        default=[],
        metavar="MASTER>SLAVE=N1,N2,...",
        help="pin the path of an application pair, e.g. 'app1>app2=qnode1,qnode2,qnode3'",
    )
    up.add_argument("--timeout", type=float, default=60.0)
    up.add_argument(
        "--agent-processes",
        type=int,
        default=None,
        metavar="N",
        help="spread the agents over N processes (default: one per 25 nodes, at most one a core)",
    )
    up.add_argument("--ca-cert", type=Path, help="an operator's own CA certificate (PEM)")
    up.add_argument("--ca-key", type=Path, help="the key of that CA (PEM, unencrypted)")
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the twin of a state directory")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="processes and endpoints of a running twin")
    status.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    status.set_defaults(func=cmd_status)

    run = commands.add_parser("run", help="run a scenario end to end (default: the paper's)")
    run.add_argument("--scenario", default="paper")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    run.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temp dir")
    run.add_argument("--requests", type=int, default=None, help="rounds per application pair")
    run.set_defaults(func=cmd_run)

    fault = commands.add_parser("fault", help="inject a fault into a running twin")
    fault.add_argument("kind", choices=["cut", "restore", "eavesdrop", "stop-node"])
    fault.add_argument("target", help="a link as NODE-NODE, or a node for stop-node")
    fault.add_argument("--fraction", type=float, default=0.25, help="intercepted share (eavesdrop)")
    fault.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    fault.set_defaults(func=cmd_fault)


def _parse_forced(values: list[str]) -> dict[str, tuple[str, ...]]:
    forced: dict[str, tuple[str, ...]] = {}
    for value in values:
        pair, sep, nodes = value.partition("=")
        if not sep or ">" not in pair or not nodes:
            raise SystemExit(f"--force-path {value!r}: expected MASTER>SLAVE=N1,N2,...")
        forced[pair] = tuple(n for n in nodes.split(",") if n)
    return forced


def cmd_up(args: argparse.Namespace) -> int:
    from lab.commands import print_problems
    from lab.endpoints import endpoints_from_plan
    from lab.launcher import LabError, make_plan, start
    from lab.topology import TopologyError, load_topology, topology_path

    console = terminal()
    path = topology_path(args.topology)
    try:
        topology = load_topology(path)
    except TopologyError as error:
        print_problems(error.problems, console)
        return 1
    state_dir: Path = args.state_dir.resolve()
    if (args.ca_cert is None) != (args.ca_key is None):
        console.print("[red]--ca-cert and --ca-key go together[/]")
        return 2
    ca = (args.ca_cert, args.ca_key) if args.ca_cert is not None else None
    if args.agent_processes is not None and args.agent_processes < 1:
        console.print("[red]--agent-processes must be at least 1[/]")
        return 2
    try:
        plan = make_plan(
            topology,
            path,
            state_dir,
            _parse_forced(args.force_path),
            ca,
            agent_processes=args.agent_processes,
        )
    except (OSError, ValueError) as error:
        console.print(f"[red]lab up failed:[/] {error}")
        return 1
    try:
        with console.status("starting the twin") as status:
            start(plan, timeout=args.timeout, progress=lambda n: status.update(f"started {n}"))
    except LabError as error:
        console.print(f"[red]lab up failed:[/] {error}")
        return 1
    endpoints_file = state_dir / "endpoints.json"
    endpoints_file.write_text(endpoints_from_plan(plan).to_json())
    console.print(f"twin [bold]{plan.name}[/] is up; endpoints: {endpoints_file}")
    return cmd_status(args)


def cmd_down(args: argparse.Namespace) -> int:
    from lab.launcher import stop

    stopped = stop(args.state_dir.resolve())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.launcher import is_ours, recorded_processes
    from lab.plan import LabPlan

    state_dir: Path = args.state_dir.resolve()
    plan_file = state_dir / "plan.json"
    if not plan_file.exists():
        print(f"no twin in {state_dir} (no plan.json)", file=sys.stderr)
        return 1
    plan = LabPlan.load(plan_file)
    table = Table(title=f"twin {plan.name} in {state_dir}")
    for column in ("process", "pid", "state", "log"):
        table.add_column(column)
    for proc in recorded_processes(state_dir):
        alive = is_ours(proc)
        state = "[green]running[/]" if alive else "[red]stopped[/]"
        table.add_row(proc.name, str(proc.pid), state, proc.log)
    nodes = Table(title="nodes")
    for column in ("node", "NETCONF", "ETSI 014", "ETSI 004", "relay"):
        nodes.add_column(column)
    for node in plan.nodes:
        nodes.add_row(
            node.name,
            node.netconf_address,
            node.km_etsi014_url,
            node.km_etsi004_address,
            node.km_relay_address,
        )
    console = terminal()
    console.print(table)
    console.print(nodes)
    console.print(f"controller: {plan.controller.url}")
    if plan.controller_token_file:  # state changes through the API need it
        console.print(f"controller API token: {plan.controller_token_file}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lab.report import print_report, timeline_chart
    from lab.scenarios.catalog import SCENARIOS
    from lab.scenarios.runner import run_scenario

    # Piped or in CI, rich would assume 80 columns and fold the timeline into many lines.
    console = terminal()
    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        console.print(f"[red]unknown scenario {args.scenario!r}[/]; known: {', '.join(SCENARIOS)}")
        return 2
    console.print(f"[bold]scenario {scenario.name}[/]: {scenario.description}")
    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        result = run_scenario(
            scenario, args.out, state_dir=args.state_dir, progress=progress, requests=args.requests
        )
    print_report(result, console)
    chart = args.out / "timeline.png"
    timeline_chart(result, chart)
    console.print(f"results: {args.out / 'results.json'}, chart: {chart}")
    return 0 if result.all_keys_match else 1


def cmd_fault(args: argparse.Namespace) -> int:
    from lab.faults import FaultError, inject
    from lab.plan import LabPlan

    plan = LabPlan.load(args.state_dir.resolve() / "plan.json")
    try:
        message = inject(plan, args.kind, args.target, args.fraction)
    except FaultError as error:
        print(f"fault not injected: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"fault": args.kind, "target": args.target, "result": message}))
    return 0
