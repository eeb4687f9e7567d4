"""The agent's layers: the datastore knows nothing of NETCONF, and agents/netconf and
agents/datastore import each other's and their own modules without a cycle (read with ast)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import agents

AGENTS = Path(agents.__file__).resolve().parent
PACKAGES = ("agents.netconf", "agents.datastore")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # the module named in the statement
    line: int
    top_level: bool  # in the module body, not inside a function or class


def _modules() -> dict[str, Path]:
    """Module name → file, for every module of PACKAGES (a package is its __init__)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        folder = AGENTS.parent.joinpath(*package.split("."))
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(AGENTS.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """Every import statement of a module, at any depth; `from p import m` names p.m when
    that is a module of ours."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            nested.update(id(inner) for inner in ast.walk(node) if inner is not node)
    for node in ast.walk(tree):
        top_level = id(node) not in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, top_level)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(
                    name, candidate if candidate in known else base, node.lineno, top_level
                )


def _all_imports() -> list[Import]:
    known = _modules()
    return [found for name, path in known.items() for found in _imports(name, path, known)]


def _graph(imports: list[Import]) -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for found in imports:
        if found.imported in known and found.imported != found.importer:
            graph[found.importer].add(found.imported)
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None if the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle_and_accepts_a_layered_graph() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = _graph(_all_imports())
    assert "agents.datastore.store" in graph["agents.datastore"]
    assert "agents.netconf.rpcs" in graph["agents.netconf.session"]
    assert "agents.datastore" in graph["agents.netconf.rpcs"]


def test_agents_netconf_and_agents_datastore_import_without_a_cycle() -> None:
    cycle = find_cycle(_graph(_all_imports()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_inside_a_function_or_class() -> None:
    hidden = [
        f"{i.importer}:{i.line} imports {i.imported}" for i in _all_imports() if not i.top_level
    ]
    assert hidden == []


def test_the_datastore_imports_nothing_of_netconf_nor_of_the_rest_of_the_agent() -> None:
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in _all_imports()
        if i.importer.startswith("agents.datastore")
        and (i.imported == "agents" or i.imported.startswith("agents."))
        and not (i.imported == "agents.datastore" or i.imported.startswith("agents.datastore."))
    ]
    assert wrong == []
