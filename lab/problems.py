"""Prints a topology's problems for the operator, one plain line each, then their count."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from lab.topology import Problem


def print_problems(problems: Sequence[Problem], console: Console) -> None:
    for problem in problems:
        # One plain line per problem (no markup: file names may hold brackets).
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    count = len(problems)
    console.print(f"{count} problem{'s' if count != 1 else ''}", style="red")
