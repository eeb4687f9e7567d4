"""`qkdsdn lab export FILE --to kubernetes|containerlab DIR`: writes a deployable network."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_IMAGE = "qkd-sdn:0.1.0"
DEFAULT_NAMESPACE = "qkdsdn"


def register_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="write Kubernetes manifests or a containerlab topology of a network"
    )
    export.add_argument("topology", help="a topology file or a packaged name")
    export.add_argument("--to", required=True, choices=["kubernetes", "containerlab"])
    export.add_argument("out_dir", type=Path, metavar="DIR", help="where to write (made if absent)")
    export.add_argument(
        "--image", default=DEFAULT_IMAGE, help="built from lab/export/Containerfile"
    )
    export.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="Kubernetes namespace (several domains: NAMESPACE-<domain> each)",
    )
    export.add_argument("--ca-cert", type=Path, help="an operator's own CA certificate (PEM)")
    export.add_argument("--ca-key", type=Path, help="the key of that CA (PEM, unencrypted)")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from common.console import console as terminal
    from lab.export.containerlab import STATE, containerlab_addressing, write_containerlab
    from lab.export.kubernetes import kubernetes_addressing, write_kubernetes
    from lab.export.network import ExportError, plan_export
    from lab.problems import print_problems
    from lab.topology import TopologyError, load_topology, topology_path

    console = terminal()
    if (args.ca_cert is None) != (args.ca_key is None):
        console.print("[red]--ca-cert and --ca-key go together[/]")
        return 2
    ca = (args.ca_cert, args.ca_key) if args.ca_cert is not None else None
    path = topology_path(args.topology)
    out_dir: Path = args.out_dir
    try:
        # The topology, its names and the namespace are checked before anything is written.
        topology = load_topology(path)
        if args.to == "kubernetes":
            addressing = kubernetes_addressing(args.namespace)
        else:
            addressing = containerlab_addressing
        addressing(topology)
        out_dir.mkdir(parents=True, exist_ok=True)
        network = plan_export(path, out_dir / STATE, addressing, ca=ca)
        if args.to == "kubernetes":
            written = write_kubernetes(network, out_dir, args.namespace, args.image)
        else:
            written = [write_containerlab(network, out_dir, args.image)]
    except TopologyError as error:
        print_problems(error.problems, console)
        return 1
    except (ExportError, ValueError, OSError) as error:
        console.print(f"qkdsdn lab export: {error}", markup=False, highlight=False)
        return 1
    for file in written:
        console.print(str(file), markup=False, highlight=False, soft_wrap=True)
    return 0
