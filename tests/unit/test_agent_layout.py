"""The agent's layout holds: the emulated hardware knows nothing of the NETCONF agent above it,
and nothing in the agent reads the node's tree by hand (every read goes through yang.model)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "agents" / "emulator"
# What the hardware may import from the agent: its own folder and the agent's configuration.
HARDWARE_MAY_USE = ("agents.emulator", "agents.config")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_emulated_hardware_does_not_import_the_netconf_agent() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted(EMULATOR.glob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] == "agents" and not module.startswith(HARDWARE_MAY_USE)
    ]
    assert wrong == []


def test_the_agent_reads_the_node_tree_only_through_the_model() -> None:
    # A hand read of the tree indexes or .get()s its containers and lists by name (writing
    # the state report, `x["qkd_links"] = ...`, is not a read).
    names = (
        "qkd_links|qkd_link|qkd_applications|qkd_app|qkd_interfaces|qkd_interface"
        "|backing_qkdl_id|virt_next_hop|virt_prev_hop|qkdl_type|qkdl_enable"
    )
    hand_read = re.compile(
        rf"""_items\(|\.get\(\s*["']({names})["']|\[\s*["']({names})["']\s*\](?!\s*=[^=])"""
    )
    wrong = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "agents").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if hand_read.search(line)
    ]
    assert wrong == []
