"""`qkdsdn audit --state-dir DIR`: every process's audit log of a state directory, merged in time order."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table

from common.audit import AuditEntry, AuditError, find_logs, merged
from common.console import console

DEFAULT_STATE_DIR = Path("state")
_AGO = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of `qkdsdn audit` (a group without sub-commands)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"a lab's state directory, searched at any depth (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--process", help="only this process: e.g. controller, km (every KM), km:qnode1"
    )
    parser.add_argument("--who", help="only changes by this caller (user or token name)")
    parser.add_argument(
        "--since",
        type=since_time,
        help="only entries at or after: an ISO 8601 time (UTC if no zone) or 30s, 10m, 2h, 1d ago",
    )
    parser.add_argument("--json", action="store_true", help="a JSON array of the entries")
    parser.set_defaults(func=cmd_audit)


def since_time(text: str, now: datetime | None = None) -> str:
    """The `--since` value as the log's own time format (UTC ISO 8601, comparable as text)."""
    now = now or datetime.now(UTC)
    ago = _AGO.fullmatch(text.strip())
    if ago:
        when = now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an ISO 8601 time nor a duration like 10m"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def select(
    entries: Sequence[AuditEntry],
    process: str | None = None,
    who: str | None = None,
    since: str | None = None,
) -> list[AuditEntry]:
    """The entries the filters keep. `process` matches a whole name or its kind ("km")."""
    return [
        entry
        for entry in entries
        if (process is None or entry.process == process or entry.process.startswith(process + ":"))
        and (who is None or entry.who == who)
        and (since is None or entry.when >= since)
    ]


def line_of(entry: AuditEntry) -> str:
    """One entry on one line (tab-separated: fields stay apart whatever they hold)."""
    fields = (
        entry.when,
        entry.process,
        f"{entry.who} ({entry.role})",
        entry.action,
        entry.target,
        entry.outcome,
        entry.detail,
    )
    return "\t".join(field.replace("\t", " ").replace("\n", " ") for field in fields)


def cmd_audit(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if not state_dir.is_dir():
        print(f"qkdsdn audit: no state directory {state_dir}", file=sys.stderr)
        return 2
    try:
        entries = select(merged(state_dir), args.process, args.who, args.since)
    except (AuditError, OSError) as error:
        print(f"qkdsdn audit: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(entry) for entry in entries], indent=2))
        return 0
    if not sys.stdout.isatty():  # piped: one line per entry, never wrapped
        for entry in entries:
            print(line_of(entry))
        return 0
    table = Table(title=f"audit of {state_dir} ({len(find_logs(state_dir))} logs)")
    for column in ("when", "process", "who", "action", "target", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "refused": "yellow", "failed": "red"}
    for entry in entries:
        colour = colours.get(entry.outcome, "white")
        table.add_row(
            entry.when,
            entry.process,
            f"{entry.who} ({entry.role})",
            entry.action,
            entry.target,
            f"[{colour}]{entry.outcome}[/]",
            entry.detail,
        )
    console().print(table)
    return 0
