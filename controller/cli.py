"""`qkdsdn controller run | status | topology | paths A B | intents | withdraw ID | policy NAME
| interdomain view|reservations|peers`.

Every call to a running controller carries a bearer token (controller/api_token.py): by
default the controller.yaml's `api_token_file` (a lab's operator token); `--role` picks the
file of another role in its `api_tokens`, `--token-file` any file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from common.console import console as terminal

DEFAULT_STATE_DIR = Path("state")
CONFIG_IN_STATE_DIR = Path("config") / "controller.yaml"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the controller of a controller.yaml (foreground)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="controller.yaml (docs/configuration.md)")
    source.add_argument(
        "--state-dir",
        type=Path,
        help=f"a lab's state directory: its {CONFIG_IN_STATE_DIR} (default {DEFAULT_STATE_DIR})",
    )
    run.add_argument(
        "--policy",
        choices=["fewest-hops", "key-aware"],
        default=None,
        help="path policy (default: the file's)",
    )
    run.add_argument(
        "--force-path",
        nargs="+",
        metavar="NODE",
        help="route every request between the first and last node over these nodes",
    )
    run.add_argument(
        "--allow-preemption",
        action="store_true",
        default=None,
        help="let higher-priority requests pre-empt lower-priority associations",
    )
    run.set_defaults(func=cmd_run)

    for name, help_text, func in (
        ("status", "nodes, links and intents of a running controller", cmd_status),
        ("topology", "links as the nodes report them, with reserved rate", cmd_topology),
        ("intents", "key associations and their state", cmd_intents),
    ):
        sub = commands.add_parser(name, help=help_text)
        _target(sub)
        sub.set_defaults(func=func)

    paths = commands.add_parser("paths", help="candidate paths between two nodes, best first")
    paths.add_argument("a", help="node name or qkdn_id")
    paths.add_argument("b", help="node name or qkdn_id")
    paths.add_argument("-k", type=int, default=3, help="how many alternatives (Yen)")
    paths.add_argument("--policy", choices=["fewest-hops", "key-aware"], default=None)
    _target(paths)
    paths.set_defaults(func=cmd_paths)

    withdraw = commands.add_parser("withdraw", help="withdraw a key association by intent id")
    withdraw.add_argument("intent_id")
    _target(withdraw)
    withdraw.set_defaults(func=cmd_withdraw)

    policy = commands.add_parser("policy", help="set the path policy of new intents (admin)")
    policy.add_argument("name", choices=["fewest-hops", "key-aware"])
    _target(policy)
    policy.set_defaults(func=cmd_policy)

    from controller.interdomain import cli as interdomain_cli

    interdomain_cli.register(commands, _target, _call, DEFAULT_STATE_DIR)


def _target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--url", help="controller API elsewhere, e.g. http://10.0.0.9:8500")
    group.add_argument(
        "--state-dir",
        type=Path,
        help=f"a lab's state directory: the API address of its {CONFIG_IN_STATE_DIR}"
        f" (default {DEFAULT_STATE_DIR})",
    )
    group.add_argument("--config", type=Path, help="the controller's controller.yaml")
    group.add_argument("--plan", type=Path, help="a lab's plan.json (its state directory)")
    credential = parser.add_mutually_exclusive_group()
    credential.add_argument(
        "--token-file",
        type=Path,
        help="the API token (default: the api_token_file of the controller.yaml pointed at)",
    )
    credential.add_argument(
        "--role",
        choices=["viewer", "operator", "admin"],
        help="use this role's token file of the controller.yaml's api_tokens",
    )


def _config_file(args: argparse.Namespace) -> Path:
    """The controller.yaml the arguments point at (--config, --state-dir or --plan)."""
    if getattr(args, "config", None) is not None:
        return Path(args.config)
    if getattr(args, "plan", None) is not None:
        return Path(args.plan).parent / CONFIG_IN_STATE_DIR
    return (args.state_dir or DEFAULT_STATE_DIR) / CONFIG_IN_STATE_DIR


def _target_of(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(API URL, token file or None): from --url/--token-file, or from a controller.yaml."""
    token_file: Path | None = args.token_file
    role: str | None = getattr(args, "role", None)
    if args.url and role is None:
        return str(args.url).rstrip("/"), token_file
    from controller.config import ConfigError, load

    path = _config_file(args)
    if not path.exists():
        raise SystemExit(
            f"no controller configuration at {path}: pass --state-dir, --config or --url"
        )
    try:
        config = load(path)
        if role is not None:
            token_file = config.api_tokens.get(role)
            if token_file is None:
                raise SystemExit(f"{path}: api_tokens has no {role} token file")
        elif token_file is None:
            token_file = config.api_token_file
        url = str(args.url).rstrip("/") if args.url else config.api.url("http")
        return url, token_file
    except ConfigError as error:
        raise SystemExit(str(error)) from None


def _headers(token_file: Path | None) -> dict[str, str]:
    if token_file is None:
        return {}
    from controller.api_token import TokenError, load_api_token

    try:
        token = load_api_token(token_file)
    except TokenError as error:
        raise SystemExit(str(error)) from None
    return {"Authorization": "Bearer " + token.value.decode("utf-8")}


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    json_body: dict[str, Any] | None = None,
    **params: Any,
) -> Any:
    import httpx

    url, token_file = _target_of(args)
    headers = _headers(token_file)  # every call, reads too, needs at least a viewer's token
    try:
        response = httpx.request(
            method,
            f"{url}{path}",
            params=params or None,
            json=json_body,
            headers=headers,
            timeout=30.0,
        )
    except httpx.HTTPError as error:
        raise SystemExit(f"controller at {url} is not answering: {error}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise SystemExit(f"controller: {detail}")
    return response.json()


def cmd_run(args: argparse.Namespace) -> int:
    from controller.main import run

    path = _config_file(args)
    if not path.exists():
        raise SystemExit(f"no controller configuration at {path}")
    return run(path, args.policy, args.force_path, args.allow_preemption)


def _rate(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} Mbit/s"
    if value >= 1_000:
        return f"{value / 1_000:.1f} kbit/s"
    return f"{value} bit/s"


def cmd_status(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/status")
    table = Table(title=f"controller ({data['policy']} policy)")
    for column in ("node", "qkdn_id", "NETCONF"):
        table.add_column(column)
    for device in data["devices"]:
        state = "[green]connected[/]" if device["connected"] else "[red]unavailable[/]"
        table.add_row(device["name"], device["qkdn_id"] or "-", state)
    console = terminal()
    console.print(table)
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(data["intents"].items())) or "none"
    console.print(f"links: {data['links']}   intents: {counts}")
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/topology")
    table = Table(title="QKD links (as the nodes report them)")
    for column in ("link", "ends", "status", "SKR", "ESKR", "reserved", "QBER"):
        table.add_column(column)
    for link in sorted(data["links"], key=lambda item: (item["a"], item["b"])):
        status = link["status"]
        shown = f"[green]{status}[/]" if status == "ACTIVE" else f"[red]{status}[/]"
        qber = f"{link['qber'] * 100:.1f} %" if link["qber"] is not None else "-"
        table.add_row(
            link["qkdl_id"][:8],
            f"{link['a']} – {link['b']}",
            shown,
            _rate(link["skr"]),
            _rate(link["eskr"]),
            _rate(link["reserved"]),
            qber,
        )
    terminal().print(table)
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"a": args.a, "b": args.b, "k": args.k}
    if args.policy:
        params["policy"] = args.policy
    data = _call(args, "GET", "/paths", **params)
    table = Table(title=f"paths {args.a} → {args.b}")
    for column in ("#", "hops", "nodes"):
        table.add_column(column)
    for index, path in enumerate(data["paths"], start=1):
        table.add_row(str(index), str(path["hops"]), " → ".join(path["nodes"]))
    console = terminal()
    console.print(table)
    if not data["paths"]:
        console.print("[yellow]no path has free key rate on every hop[/]")
    return 0


def cmd_intents(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/intents")
    table = Table(title="key association intents")
    for column in ("intent", "apps", "state", "path", "reserved", "reason"):
        table.add_column(column, overflow="fold")
    colours = {"INSTALLED": "green", "REJECTED": "yellow", "FAILED": "red"}
    for intent in data:
        colour = colours.get(intent["state"], "white")
        path = " → ".join(intent["path"]["nodes"]) if intent["path"] else "-"
        apps = f"{intent['server_app_id']} → {', '.join(intent['client_app_ids'])}"
        table.add_row(
            intent["intent_id"][:8],
            apps,
            f"[{colour}]{intent['state']}[/]",
            path,
            _rate(intent["bandwidth"]),
            intent["reason"],
        )
    terminal().print(table)
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    data = _call(args, "PUT", "/policy", json_body={"policy": args.name})
    terminal().print(f"path policy: {data['policy']}")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    data = _call(args, "DELETE", f"/intents/{args.intent_id}")
    terminal().print(f"intent {data['intent_id']}: {data['state']}")
    return 0
