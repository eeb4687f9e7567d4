"""The CLI's rich console: on a terminal as wide as it is, into a pipe never wrapped."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 400  # tables still need a width; lines shorter than this are never folded


def console() -> Console:
    """A console for stdout that folds long lines only on a terminal."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH, soft_wrap=True)
