"""What `qkdsdn top` draws (pure): one frame of the controller's live state as rich tables."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

FEED_LINES = 10  # recent alarms and decisions shown
STATE_STYLE = {"ACTIVE": "green", "PASSIVE": "yellow", "PENDING": "yellow", "OFF": "red"}
INTENT_STYLE = {"INSTALLED": "green", "INSTALLING": "yellow", "FAILED": "red", "REJECTED": "red"}
FEED_STYLE = {"alarm": "red", "decision": "cyan", "steering": "magenta", "buffer": "blue"}


def rate_text(bps: float | None) -> str:
    """bit/s with a unit prefix: 1.2 Mbit/s, 850 bit/s; "-" when unknown."""
    if bps is None:
        return "-"
    for unit, scale in (("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def bits_text(bits: int | None) -> str:
    """A bit count with a unit prefix: 12.3 kbit, 4.1 Mbit; "-" when unknown."""
    if bits is None:
        return "-"
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits} bit"


def clock_text(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rows(state: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    rows = state.get(key)
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def header(state: Mapping[str, Any] | None, url: str, problem: str) -> Text:
    text = Text("qkdsdn top", style="bold")
    text.append(f"  {url}")
    if state is not None:
        text.append(f"  control {state.get('control', '?')}")
        text.append(f"  at {clock_text(_number(state.get('time')))} UTC")
    if problem:
        text.append(f"\n{problem}", style="bold red")
    return text


def nodes_table(state: Mapping[str, Any]) -> Table:
    table = Table(title="nodes", title_justify="left", expand=False)
    table.add_column("node", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for node in _rows(state, "nodes"):
        up = bool(node.get("available"))
        table.add_row(
            str(node.get("name", "?")), Text("up" if up else "down", "green" if up else "red")
        )
    return table


def links_table(state: Mapping[str, Any]) -> Table:
    table = Table(title="links", title_justify="left")
    for column, justify in (
        ("link", "left"),
        ("state", "left"),
        ("SKR", "right"),
        ("QBER", "right"),
        ("pool", "right"),
        ("reserved", "right"),
        ("load", "right"),
        ("steering", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for link in _rows(state, "links"):
        status = str(link.get("status", "?"))
        qber = _number(link.get("qber"))
        load = _number(link.get("load"))
        table.add_row(
            f"{link.get('a', '?')}–{link.get('b', '?')}",
            Text(status, STATE_STYLE.get(status, "")),
            rate_text(_number(link.get("skr"))),
            "-" if qber is None else f"{qber:.1%}",
            bits_text(_int(link.get("pool_bits"))),
            rate_text(_number(link.get("reserved"))),
            "-" if load is None else f"{load:.0%}",
            str(link.get("steering") or ""),
        )
    return table


def _int(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def intents_table(state: Mapping[str, Any]) -> Table:
    table = Table(title="key associations", title_justify="left")
    for column, justify in (
        ("pair", "left"),
        ("state", "left"),
        ("path", "left"),
        ("reserved", "right"),
        ("delivered", "right"),
        ("consumed", "right"),
        ("buffer", "right"),
        ("failures", "right"),
        ("prio", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "path")  # type: ignore[arg-type]
    for intent in _rows(state, "intents"):
        status = str(intent.get("state", "?"))
        path = intent.get("path")
        nodes = [str(n) for n in path] if isinstance(path, list) else []
        buffer = _int(intent.get("buffer"))
        table.add_row(
            str(intent.get("pair", "?")),
            Text(status, INTENT_STYLE.get(status, "")),
            " > ".join(nodes) or "-",
            rate_text(_number(intent.get("bandwidth"))),
            rate_text(_number(intent.get("rate_bps"))),
            bits_text(_int(intent.get("consumed_bits"))),
            "-" if buffer is None else str(buffer),
            str(_int(intent.get("failures")) or 0),
            str(_int(intent.get("priority")) or 0),
        )
    return table


def feed_table(state: Mapping[str, Any], lines: int = FEED_LINES) -> Table:
    table = Table(title="recent alarms and decisions", title_justify="left")
    table.add_column("at", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("what")
    entries: Sequence[Mapping[str, Any]] = _rows(state, "feed")[-lines:]
    for entry in reversed(entries):  # newest first
        kind = str(entry.get("kind", "?"))
        table.add_row(
            clock_text(_number(entry.get("at"))),
            Text(kind, FEED_STYLE.get(kind, "")),
            Text(str(entry.get("text", ""))),
        )
    return table


def frame(state: Mapping[str, Any] | None, url: str, problem: str = "") -> RenderableType:
    """The whole screen: a header, then (when a state is known) nodes, links, associations
    and the recent log. `problem`: why the state is old or missing (controller down)."""
    parts: list[RenderableType] = [header(state, url, problem)]
    if state is not None:
        parts += [nodes_table(state), links_table(state), intents_table(state), feed_table(state)]
    return Group(*parts)


def frame_text(
    state: Mapping[str, Any] | None, url: str, problem: str = "", width: int = 160
) -> str:
    """The frame as plain text at a fixed width (no colours): for `--once` into a pipe and tests."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    console.print(frame(state, url, problem))
    return out.getvalue()
