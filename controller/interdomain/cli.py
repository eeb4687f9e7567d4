"""`qkdsdn controller interdomain view | reservations | peers`: a domain's cross-domain state,
rich tables on a terminal, one plain line per row into a pipe (never wrapped), or `--json`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from common.console import console

Rows = tuple[list[str], list[list[str]]]  # (columns, rows)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    target: Callable[[argparse.ArgumentParser], None],
    call: Callable[[argparse.Namespace, str, str], Any],
    default_state_dir: Path,
) -> None:
    """The `interdomain` group; `target` adds the --url/--state-dir/... options, `call`
    GETs a path of the chosen controller (the controller CLI's own, with its token)."""
    group = commands.add_parser(
        "interdomain", help="cross-domain state: abstract view, reservations, peer domains"
    )
    sub = group.add_subparsers(dest="interdomain_command", metavar="WHAT", required=True)
    for name, help_text, func in (
        ("view", "the abstract view this domain shows its peers", cmd_view),
        ("reservations", "the two-phase reservations this domain holds", cmd_reservations),
        ("peers", "the peer domains, their views and what they hold here", cmd_peers),
    ):
        parser = sub.add_parser(name, help=help_text)
        target(parser)
        parser.add_argument(
            "--domain",
            metavar="NAME",
            help="with --state-dir/--plan of a twin of several domains: the controller of "
            "domain NAME (its config/controller-NAME.yaml)",
        )
        parser.add_argument("--json", action="store_true", help="the API's JSON, as it is")
        parser.set_defaults(func=func, call=call, default_state_dir=default_state_dir)


# ------------------------------------------------------------------ pure: rows of each table


def rate(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "-"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} Mbit/s"
    if value >= 1_000:
        return f"{value / 1_000:.1f} kbit/s"
    return f"{value} bit/s"


def when(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S")


def view_tables(view: dict[str, Any]) -> list[tuple[str, Rows]]:
    """The view as three tables: borders, reach (with own SAEs), border rates."""
    domain = view.get("domain", "?")
    borders = [
        [b.get("node", ""), b.get("peer_domain", ""), b.get("peer_node") or "-"]
        for b in view.get("borders", [])
    ]
    reach = [[sae, domain, "served here"] for sae in view.get("saes", [])]
    reach += [[sae, " → ".join(path), ""] for sae, path in sorted(view.get("reach", {}).items())]
    rates = [
        [r.get("from", ""), r.get("to", ""), rate(r.get("available_bps"))]
        for r in view.get("border_rates", [])
    ]
    return [
        (f"domain {domain}: borders", (["border", "meets domain", "at its node"], borders)),
        (f"domain {domain}: SAEs reached", (["SAE", "domain path", ""], reach)),
        (f"domain {domain}: free key rate", (["from", "to", "available"], rates)),
    ]


def reservation_rows(holds: Sequence[dict[str, Any]]) -> Rows:
    columns = ["id", "origin", "apps", "segment", "rate", "mode", "state", "expires", "reason"]
    rows = [
        [
            str(h.get("id", "")),
            str(h.get("origin", "")),
            f"{h.get('master_sae')} → {h.get('slave_sae')}",
            f"{h.get('ingress') or h.get('master_sae')} → {h.get('egress') or h.get('slave_sae')}",
            rate(h.get("rate_bps")),
            str(h.get("key_mode", "")),
            str(h.get("state", "")),
            when(h.get("expires_at")) if h.get("state") == "reserved" else "-",
            str(h.get("reason") or "-"),
        ]
        for h in holds
    ]
    return columns, rows


def peer_rows(peers: Sequence[dict[str, Any]]) -> Rows:
    columns = ["peer", "state", "view age", "borders", "SAEs", "reaches", "holds here", "modes"]
    rows = []
    for p in peers:
        age = p.get("view_age_s")
        borders = ", ".join(p.get("borders", [])) or "(not a neighbour)"
        held = f"{p.get('reservations', 0)} ({rate(p.get('reserved_bps'))} of "
        held += f"{rate(p.get('rate_cap_bps'))})"
        rows.append(
            [
                str(p.get("name", "")),
                str(p.get("state", "")),
                "-" if age is None else f"{age:g} s",
                borders,
                ", ".join(p.get("saes", [])) or "-",
                ", ".join(p.get("reach", [])) or "-",
                held,
                ", ".join(p.get("key_modes", [])),
            ]
        )
    return columns, rows


def plain(rows: Rows) -> list[str]:
    """One line per row, columns separated by two spaces and padded (no wrapping)."""
    columns, body = rows
    if not body:
        return []
    widths = [max(len(x) for x in column) for column in zip(columns, *body, strict=True)]
    lines = []
    for row in (columns, *body):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return lines


# ------------------------------------------------------------------ output


COLOURS = {
    "committed": "green",
    "reserved": "cyan",
    "committing": "cyan",
    "released": "white",
    "expired": "yellow",
    "broken": "red",
    "up": "green",
    "stale": "yellow",
    "no view": "red",
}


def show(tables: list[tuple[str, Rows]], empty: str) -> None:
    if not sys.stdout.isatty():  # piped: plain lines, never wrapped
        for title, rows in tables:
            lines = plain(rows)
            if len(tables) > 1:
                print(f"# {title}")
            print("\n".join(lines) if lines else f"({empty})")
        return
    out = console()
    for title, (columns, body) in tables:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in body:
            table.add_row(*(f"[{COLOURS[c]}]{c}[/]" if c in COLOURS else c for c in row))
        out.print(table)
        if not body:
            out.print(f"[yellow]{empty}[/]")


def domain_config_file(state_dir: Path, domain: str | None) -> Path | None:
    """The controller.yaml of `domain` in a lab state directory (None: its single
    controller's); SystemExit naming the domains when a twin of several needs --domain."""
    config = state_dir / "config"
    if domain is not None:
        path = config / f"controller-{domain}.yaml"
        if not path.exists():
            known = sorted(
                p.stem.removeprefix("controller-") for p in config.glob("controller-*.yaml")
            )
            raise SystemExit(
                f"no controller of domain {domain} in {state_dir}; domains: {', '.join(known) or 'none'}"
            )
        return path
    if not (config / "controller.yaml").exists():
        known = sorted(p.stem.removeprefix("controller-") for p in config.glob("controller-*.yaml"))
        if known:
            raise SystemExit(
                f"{state_dir} is a twin of several domains: pass --domain ({', '.join(known)})"
            )
    return None


def _fetch(args: argparse.Namespace, path: str) -> Any:
    if args.url is None and args.config is None:
        state_dir = Path(args.plan).parent if args.plan is not None else args.state_dir
        chosen = domain_config_file(state_dir or args.default_state_dir, args.domain)
        if chosen is not None:
            args.config = chosen
    return args.call(args, "GET", path)


def cmd_view(args: argparse.Namespace) -> int:
    return _print(args, "/interdomain/view", view_tables, "none")


def cmd_reservations(args: argparse.Namespace) -> int:
    return _print(
        args,
        "/interdomain/reservations",
        lambda data: [("inter-domain reservations", reservation_rows(data))],
        "no reservations",
    )


def cmd_peers(args: argparse.Namespace) -> int:
    return _print(
        args,
        "/interdomain/peers",
        lambda data: [("peer domains", peer_rows(data))],
        "no peer domains",
    )


def _print(
    args: argparse.Namespace,
    path: str,
    tables: Callable[[Any], list[tuple[str, Rows]]],
    empty: str,
) -> int:
    """GET `path`; print it as JSON (--json) or as `tables(data)`."""
    data = _fetch(args, path)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        show(tables(data), empty)
    return 0
