"""`qkdsdn lab up | down | status | restart | run | fault`: operating a twin from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.console import console as terminal

if TYPE_CHECKING:
    from lab.restarts import RestartPolicy
    from lab.scenarios.catalog import Scenario

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
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also run Prometheus scraping every process (URL in endpoints.json, monitoring)",
    )
    up.add_argument("--ca-cert", type=Path, help="an operator's own CA certificate (PEM)")
    up.add_argument("--ca-key", type=Path, help="the key of that CA (PEM, unencrypted)")
    _restart_options(up)
    _hosts_option(up)
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the twin of a state directory")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="processes and endpoints of a running twin")
    status.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    status.set_defaults(func=cmd_status)

    restart = commands.add_parser(
        "restart", help="restart one process of a running twin (e.g. km-qnode1, agents)"
    )
    restart.add_argument("name", help="a process name as `lab status` shows it")
    restart.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to be ready")
    restart.set_defaults(func=cmd_restart)

    supervise = commands.add_parser(
        "supervise", help="(started by `lab up`) run and watch the twin of a state directory"
    )
    supervise.add_argument("--state-dir", type=Path, required=True)
    supervise.add_argument("--timeout", type=float, default=60.0)
    supervise.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    _restart_options(supervise)
    supervise.set_defaults(func=cmd_supervise)

    run = commands.add_parser("run", help="run a scenario end to end (default: the paper's)")
    run.add_argument("--scenario", default="paper")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    run.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temp dir")
    run.add_argument("--requests", type=int, default=None, help="rounds per application pair")
    _hosts_option(run)
    run.set_defaults(func=cmd_run)

    fault = commands.add_parser("fault", help="inject a fault into a running twin")
    fault.add_argument(
        "kind", choices=["cut", "restore", "eavesdrop", "stop-node", "partition", "heal", "kill"]
    )
    fault.add_argument(
        "target",
        help="a link as NODE-NODE, a node for stop-node, partition and heal, or a process as "
        "`lab status` names it for kill (SIGKILL, e.g. km-b_a)",
    )
    fault.add_argument("--fraction", type=float, default=0.25, help="intercepted share (eavesdrop)")
    fault.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    fault.set_defaults(func=cmd_fault)


def _hosts_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hosts",
        choices=["local", "netns"],
        default="local",
        help="local: every process on 127.0.0.1; netns: each node (agent and key manager) and "
        "the controller in its own network namespace with its own address (root)",
    )


def _restart_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart-limit",
        type=int,
        default=5,
        metavar="N",
        help="restarts of a dying process within the window before it stays down (default 5)",
    )
    parser.add_argument(
        "--restart-window", type=float, default=60.0, metavar="S", help="seconds (default 60)"
    )


def _policy(args: argparse.Namespace) -> RestartPolicy:
    from lab.restarts import RestartPolicy

    return RestartPolicy(limit=args.restart_limit, window_s=args.restart_window)


def _hosts_possible(kind: str, console: Console) -> bool:
    """False (and why, printed) when this machine cannot give the twin hosts of that kind."""
    from lab.netns import unavailable

    reason = unavailable() if kind == "netns" else None
    if reason is not None:
        console.print(f"[red]--hosts netns is not possible here:[/] {escape(reason)}")
    return reason is None


def _parse_forced(values: list[str]) -> dict[str, tuple[str, ...]]:
    forced: dict[str, tuple[str, ...]] = {}
    for value in values:
        pair, sep, nodes = value.partition("=")
        if not sep or ">" not in pair or not nodes:
            raise SystemExit(f"--force-path {value!r}: expected MASTER>SLAVE=N1,N2,...")
        forced[pair] = tuple(n for n in nodes.split(",") if n)
    return forced


def cmd_up(args: argparse.Namespace) -> int:
    from lab.endpoints import endpoints_from_plan
    from lab.hosts import make_hosts, remove_hosts
    from lab.launcher import LabError, make_plan, start_supervised, start_with_free_ports
    from lab.netns import NetnsError
    from lab.problems import print_problems
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
    forced = _parse_forced(args.force_path)
    if not _hosts_possible(args.hosts, console):
        return 2
    try:
        policy = _policy(args)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        return 2
    try:
        hosts = make_hosts(
            args.hosts,
            state_dir,
            [node.name for node in topology.nodes],
            [domain.name for domain in topology.domains],
        )
    except NetnsError as error:
        console.print(f"[red]lab up failed:[/] {error}")
        return 1
    try:
        plan = make_plan(
            topology,
            path,
            state_dir,
            forced,
            ca,
            agent_processes=args.agent_processes,
            hosts=hosts,
            monitoring=args.monitoring,
        )
        with console.status("starting the twin") as status:
            # The supervisor starts the processes on the hosts `state_dir` records; a port
            # taken meanwhile by another process: planned again with other ports.
            plan, _ = start_with_free_ports(
                plan,
                lambda planned: start_supervised(
                    planned,
                    timeout=args.timeout,
                    progress=lambda n: status.update(f"started {n}"),
                    policy=policy,
                ),
                say=status.update,
            )
    except (OSError, ValueError, LabError) as error:
        remove_hosts(state_dir)
        console.print(f"[red]lab up failed:[/] {error}")
        return 1
    except BaseException:
        remove_hosts(state_dir)
        raise
    endpoints_file = state_dir / "endpoints.json"
    endpoints_file.write_text(endpoints_from_plan(plan, hosts).to_json())
    console.print(f"twin [bold]{plan.name}[/] is up; endpoints: {endpoints_file}")
    return cmd_status(args)


def cmd_down(args: argparse.Namespace) -> int:
    from lab.hosts import remove_hosts
    from lab.launcher import stop
    from lab.netns import NetnsError

    state_dir: Path = args.state_dir.resolve()
    report = stop(state_dir)
    print(f"stopped: {', '.join(report.stopped)}" if report.stopped else "nothing was running")
    if report.killed:
        print(f"SIGKILLed (SIGTERM did not end them): {', '.join(report.killed)}")
    try:
        removed = remove_hosts(state_dir)  # also what a crashed `lab up` left behind
    except NetnsError as error:
        print(f"lab down: {error}", file=sys.stderr)
        return 1
    if removed:
        print(f"removed: {', '.join(removed)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.hosts import hosts_of
    from lab.launcher import is_ours, recorded_status, supervisor_running
    from lab.plan import LabPlan, controller_role_tokens

    state_dir: Path = args.state_dir.resolve()
    plan_file = state_dir / "plan.json"
    if not plan_file.exists():
        print(f"no twin in {state_dir} (no plan.json)", file=sys.stderr)
        return 1
    plan = LabPlan.load(plan_file)
    supervisor = supervisor_running(state_dir)
    watch = f"supervisor pid {supervisor.pid}" if supervisor else "no supervisor"
    table = Table(title=f"twin {plan.name} in {state_dir} ({watch})")
    for column in ("process", "pid", "state", "restarts", "last exit", "log"):
        table.add_column(column)
    for entry in recorded_status(state_dir):
        proc = entry.process
        state = entry.state
        if state in ("running", "starting") and not is_ours(proc):
            state = "dead"  # recorded as running, gone: no supervisor saw it die
        colour = {"running": "green", "restarting": "yellow", "starting": "yellow"}.get(
            state, "red"
        )
        shown = f"[{colour}]{state}[/]" + (f" ({entry.reason})" if entry.reason else "")
        last_exit = "" if entry.last_exit is None else str(entry.last_exit)
        table.add_row(proc.name, str(proc.pid), shown, str(entry.restarts), last_exit, proc.log)
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
    if plan.domains:
        for domain in plan.domains:
            console.print(
                f"{domain.process}: {domain.controller.url} (domain {domain.name}: "
                f"{', '.join(domain.nodes)}; CA {domain.ca_cert})",
                markup=False,
            )
    else:
        console.print(f"controller: {plan.controller.url}")
    if plan.prometheus_port:
        from lab.monitoring import prometheus_url

        console.print(f"prometheus: {prometheus_url(plan)}")
    hosts = hosts_of(state_dir)
    if hosts.kind == "netns":
        controllers = dict(hosts.controllers) or {"controller": hosts.controller}
        placed = [*hosts.nodes.items(), *controllers.items()]
        console.print(
            f"network namespaces: the host is {hosts.applications}; "
            + ", ".join(f"{name} in {host.namespace}" for name, host in placed)
        )
    token_files = {d.process: d.token_file for d in plan.domains} or {
        "controller": plan.controller_token_file
    }
    for process, token_file in token_files.items():  # every API call needs a role's token
        if not token_file:
            continue
        tokens = controller_role_tokens(token_file)
        console.print(
            f"{process} API tokens: "
            + ", ".join(f"{role} {path}" for role, path in tokens.items() if Path(path).exists())
        )
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from lab.control import RestartError, restart_process

    try:
        message = restart_process(args.state_dir.resolve(), args.name, args.timeout)
    except RestartError as error:
        print(f"restart failed: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    from lab.supervisor import supervise

    try:
        policy = _policy(args)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    return supervise(args.state_dir.resolve(), args.timeout, args.ready_fd, policy)


def cmd_run(args: argparse.Namespace) -> int:
    from lab.report import print_report, timeline_chart
    from lab.scenarios.catalog import SCENARIOS
    from lab.scenarios.runner import run_scenario

    # Piped or in CI, rich would assume 80 columns and fold the timeline into many lines.
    console = terminal()
    if args.scenario == "domains":  # two twins (three domains, one): lab/scenarios/domains.py
        from lab.scenarios.domains import domains_command

        if args.hosts != "local":  # its figures compare two loopback twins
            console.print(
                "[red]--hosts netns: the domains scenario runs on loopback;[/] "
                "`qkdsdn lab up three-domains --hosts netns` runs the domains in namespaces"
            )
            return 2

        console.print(f"[bold]scenario domains[/]: {SCENARIOS['domains'].description}")
        return domains_command(args.out, args.state_dir, console, args.requests)
    if args.scenario == "surge":  # two runs (static, data-driven): lab/scenarios/surge.py
        from lab.scenarios.surge import surge_command

        console.print(f"[bold]scenario surge[/]: {SCENARIOS['surge'].description}")
        return surge_command(args.out, args.state_dir, console)
    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        console.print(f"[red]unknown scenario {args.scenario!r}[/]; known: {', '.join(SCENARIOS)}")
        return 2
    if not _hosts_possible(args.hosts, console):
        return 2
    console.print(f"[bold]scenario {scenario.name}[/]: {scenario.description}")
    if scenario.name == "outage":
        return _run_outage(args, scenario, console)
    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        result = run_scenario(
            scenario,
            args.out,
            state_dir=args.state_dir,
            progress=progress,
            requests=args.requests,
            hosts=args.hosts,
        )
    print_report(result, console)
    chart = args.out / "timeline.png"
    timeline_chart(result, chart)
    console.print(f"results: {args.out / 'results.json'}, chart: {chart}")
    return 0 if result.all_keys_match else 1


def _run_outage(args: argparse.Namespace, scenario: Scenario, console: Console) -> int:
    from lab.scenarios.outage import run_outage

    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        result = run_outage(
            scenario, args.out, state_dir=args.state_dir, progress=progress, hosts=args.hosts
        )
    ok = result.all_keys_match
    for pair in result.pairs:
        console.print(
            f"{pair.pair} ({pair.mode}): {pair.requests} requests, during the outage"
            f" {pair.origins_during_outage}; switch after link-down notice"
            f" {pair.switch_after_notice_ms} ms; first request after the association failed:"
            f" {pair.first_after_failure_origin}; back to QKD {pair.back_to_qkd_after_install_ms}"
            f" ms after re-installation; refusal: {pair.refusal_reason}"
        )
        expected_failures = pair.mode == "qkd-only"
        ok = ok and pair.failed_outside_outage == 0
        ok = ok and (
            pair.failed_during_outage > 0 if expected_failures else pair.failed_during_outage == 0
        )
    console.print(f"results: {args.out / 'results.json'}, chart: {args.out / 'outage.png'}")
    return 0 if ok else 1


def cmd_fault(args: argparse.Namespace) -> int:
    from lab.faults import NETWORK_KINDS, PROCESS_KINDS, FaultError, inject, kill_process, partition
    from lab.plan import LabPlan

    state_dir: Path = args.state_dir.resolve()
    try:
        if args.kind in PROCESS_KINDS:
            message = kill_process(state_dir, args.target)
        elif args.kind in NETWORK_KINDS:
            message = partition(state_dir, args.target, cut=args.kind == "partition")
        else:
            plan = LabPlan.load(state_dir / "plan.json")
            message = inject(plan, args.kind, args.target, args.fraction)
    except FaultError as error:
        print(f"fault not injected: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"fault": args.kind, "target": args.target, "result": message}))
    return 0
