"""The `qkdsdn` command: one entry point, each part registers its own sub-commands.

Sub-command modules are imported lazily so that `qkdsdn lab check` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# group name -> module with `register(subparsers) -> None`; each sub-command sets `func`.
GROUPS: dict[str, tuple[str, str]] = {
    "lab": (
        "lab.commands",
        "run the digital twin: check, up, down, status, restart, run, fault, export",
    ),
    "controller": ("controller.cli", "run the SDN controller or query a running one"),
    "agent": ("agents.main", "run the NETCONF agents of one or more nodes (--config)"),
    "km": ("km.main", "run one or more key managers (--config)"),
    "audit": ("lab.audit_cli", "the merged audit log of a state directory's processes"),
    "top": ("lab.top", "the controller's live view in the terminal: links, associations, alarms"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qkdsdn", description="Software-defined QKD network")
    groups = parser.add_subparsers(dest="group", metavar="{" + ",".join(GROUPS) + "}")
    wanted = argv[0] if argv else None
    for name, (module_name, help_text) in GROUPS.items():
        group = groups.add_parser(name, help=help_text)
        if name == wanted:  # import only the group being run
            module = importlib.import_module(module_name)
            if hasattr(module, "configure"):  # a group that is one command (qkdsdn audit)
                module.configure(group)
            else:
                module.register(group.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result = func(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
