"""The `qkdsdn lab` command group: one function per sub-command.

`check` lives here; `up`, `down`, `status`, `restart`, `run`, `fault` (and `supervise`, which
`lab up` starts) come from `lab.operate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agents.emulator.physics import link_rate
from common.console import console as terminal
from lab.problems import print_problems
from lab.topology import Topology, TopologyError, load_topology, topology_path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `lab` sub-commands; each sets `func(args) -> int` (the exit status)."""
    register_check(commands)
    from lab.operate import register_operations  # heavier imports stay out of `lab check`

    register_operations(commands)
    from lab.export.cli import register_export

    register_export(commands)


def register_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check", help="validate a topology file and show what the twin would model"
    )
    check.add_argument(
        "topology",
        nargs="?",
        default="triangle",
        help="a topology file or a packaged name (triangle, chain10, metro-madrid)",
    )
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    console = terminal()
    path = topology_path(args.topology)
    try:
        topology = load_topology(path)
    except TopologyError as error:
        print_problems(error.problems, console)
        return 1
    print_summary(topology, path, console)
    return 0


def _rate_text(bps: float) -> str:
    for unit, scale in (("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def print_summary(topology: Topology, path: Path, console: Console) -> None:
    """Nodes, links with the model's key rate and QBER, and applications."""
    console.print(
        f"[bold]{topology.name}[/] ({escape(str(path))}): {len(topology.nodes)} nodes, "
        f"{len(topology.links)} links, {len(topology.apps)} applications — OK"
    )
    if topology.description:
        console.print(topology.description, markup=False)
    settings = topology.settings
    console.print(
        f"keys {settings.key_size_bits} bits, relay {settings.relay_mode}, "
        f"{settings.e2e_buffer} keys relayed ahead, link pools {settings.link_pool_bits} bits"
    )
    for domain in topology.domains:
        trusts = ", ".join(domain.trusts) or "no other domain"
        about = f" ({domain.description})" if domain.description else ""
        console.print(f"domain {domain.name}{about}: trusts {trusts}", markup=False)
    for border in topology.borders:
        console.print(
            f"border site: {border.a} ({topology.domain_of(border.a)}) – "
            f"{border.b} ({topology.domain_of(border.b)})",
            markup=False,
        )
    nodes = Table(title="nodes")
    nodes.add_column("node")
    if topology.domains:
        nodes.add_column("domain")
    nodes.add_column("location")
    nodes.add_column("links", justify="right")
    nodes.add_column("applications")
    for node in topology.nodes:
        degree = sum(node.name in (link.a, link.b) for link in topology.links)
        apps = ", ".join(app.sae_id for app in topology.apps if app.node == node.name)
        in_domain: tuple[str, ...] = (node.domain,) if topology.domains else ()
        nodes.add_row(node.name, *in_domain, Text(node.location), str(degree), apps)
    links = Table(
        title="links", caption="SKR and QBER from the physical model; * given in the file"
    )
    links.add_column("link", no_wrap=True)
    links.add_column("preset", no_wrap=True)
    links.add_column("fibre", justify="right", no_wrap=True)
    links.add_column("SKR", justify="right", no_wrap=True)
    links.add_column("QBER", justify="right", no_wrap=True)
    for link in topology.links:
        rate = link_rate(
            link.preset, link.length_km, link.extra_loss_db, skr_bps=link.skr_bps, qber=link.qber
        )
        fibre = f"{link.length_km:g} km"
        if link.extra_loss_db:
            fibre += f" +{link.extra_loss_db:g} dB"
        skr = "[red]aborted[/]" if rate.aborted else _rate_text(rate.skr_bps)
        links.add_row(
            f"{link.a}–{link.b}",
            link.preset,
            fibre,
            skr + ("*" if link.skr_bps is not None else ""),
            f"{rate.qber:.1%}" + ("*" if link.qber is not None else ""),
        )
    console.print(nodes)
    console.print(links)
