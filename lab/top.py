"""`qkdsdn top --state-dir DIR`: the controller's live state in the terminal, refreshing."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.live import Live

from common.console import console
from lab.endpoints import ENDPOINTS_FILE, Endpoints, EndpointsError
from lab.top_view import frame, frame_text

DEFAULT_STATE_DIR = Path("state")
VIEWER_TOKEN = Path("secrets") / "controller-token-viewer"


class TopError(Exception):
    """The state directory does not describe a twin `top` can watch; the message says why."""


@dataclass(frozen=True)
class Source:
    """Where the live state comes from: the controller's URL and the viewer's token."""

    url: str
    token: str

    def __repr__(self) -> str:  # never the token
        return f"Source({self.url})"

    @staticmethod
    def of_state_dir(state_dir: Path) -> Source:
        try:
            endpoints = Endpoints.load(state_dir / ENDPOINTS_FILE)
        except (OSError, EndpointsError) as error:
            raise TopError(f"{state_dir}: no running twin ({error})") from None
        token_file = state_dir / VIEWER_TOKEN
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise TopError(
                f"{token_file}: cannot read the viewer token ({error.strerror})"
            ) from None
        if not token:
            raise TopError(f"{token_file}: empty viewer token")
        return Source(endpoints.controller.url.rstrip("/"), token)


def fetch(client: httpx.Client, source: Source) -> tuple[dict[str, Any] | None, str]:
    """(the controller's /live/state, "") or (None, why not)."""
    try:
        reply = client.get(
            f"{source.url}/live/state", headers={"Authorization": f"Bearer {source.token}"}
        )
    except httpx.HTTPError as error:
        return None, f"controller unreachable ({type(error).__name__}), retrying"
    if reply.status_code != 200:
        detail = reply.text[:200]
        return None, f"controller answered {reply.status_code}: {detail}"
    try:
        state = reply.json()
    except ValueError:
        return None, "controller sent a malformed state (not JSON)"
    if not isinstance(state, dict):
        return None, "controller sent a malformed state (not a JSON object)"
    return state, ""


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of `qkdsdn top` (a group without sub-commands)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"the twin's state directory (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="columns of a --once frame (default: terminal)"
    )
    parser.set_defaults(func=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    if not 0.1 <= args.interval <= 60:
        print(f"qkdsdn top: --interval must be 0.1 to 60 s, got {args.interval}", file=sys.stderr)
        return 2
    try:
        source = Source.of_state_dir(args.state_dir)
    except TopError as error:
        print(f"qkdsdn top: {error}", file=sys.stderr)
        return 2
    with httpx.Client(timeout=min(5.0, max(1.0, args.interval * 2))) as client:
        if args.once:
            return once(client, source, args.width)
        return watch(client, source, args.interval)


def once(client: httpx.Client, source: Source, width: int | None) -> int:
    state, problem = fetch(client, source)
    if width is None:
        console().print(frame(state, source.url, problem))
    else:
        sys.stdout.write(frame_text(state, source.url, problem, width))
    return 0 if state is not None else 1


def watch(client: httpx.Client, source: Source, interval: float) -> int:
    """Redraws every `interval` until Ctrl-C; while the controller is down the last frame
    stays with a line saying so, and the next answer replaces it."""
    last: dict[str, Any] | None = None
    state, problem = fetch(client, source)
    last = state or last
    with Live(frame(last, source.url, problem), auto_refresh=False, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                state, problem = fetch(client, source)
                last = state or last
                live.update(frame(last, source.url, problem), refresh=True)
        except KeyboardInterrupt:
            return 0
