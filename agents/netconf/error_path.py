"""RFC 6241 §4.3 <error-path>: a libyang-style data path as an XPath whose prefixes are bound.

The datastore and libyang locate a node as `/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link
[qkdl_id='x']/virt_bandwidth` (a module name on the first node and where the module
changes) or with no module at all (`/qkd_node/bogus`). A NETCONF client evaluates
<error-path> as an XPath in the context of the <rpc-error>, so every step needs a prefix
declared there: this module rewrites each step (and each key in a predicate) to
`prefix:name` and returns the prefix → namespace bindings to declare on the element.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agents.access.paths import split_steps

# One step: an optional module, a name, and its predicates (quoted values may hold anything).
_STEP = re.compile(
    r"""(?:(?P<module>[^\W\d][\w.\-]*):)?(?P<name>[^\W\d][\w.\-]*|\*)
        (?P<predicates>(?:\[(?:'[^']*'|"[^"]*"|[^\]'"])*\])*)""",
    re.VERBOSE,
)
_PREDICATE = re.compile(
    r"""\[\s*(?:(?P<module>[^\W\d][\w.\-]*):)?(?P<key>[^\W\d][\w.\-]*)\s*=\s*
        (?P<value>'[^']*'|"[^"]*")\s*\]
      | \[(?P<other>(?:'[^']*'|"[^"]*"|[^\]'"])*)\]""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class ErrorPath:
    """The XPath text and the prefixes it uses, as (prefix, namespace) pairs."""

    xpath: str
    namespaces: tuple[tuple[str, str], ...]


def error_path(path: str, modules: Mapping[str, str], default_module: str) -> ErrorPath | None:
    """`path` with each step prefixed by its module's name (the prefix bound to the module's
    namespace). A step without a module belongs to its parent's module, the first to
    `default_module`. None when `path` is no absolute data path of known modules (the
    caller then leaves <error-path> out rather than send one that does not resolve).

    `modules` maps module name → namespace.
    """
    if not path.startswith("/"):
        return None
    if path == "/":
        return ErrorPath("/", ())
    used: dict[str, str] = {}
    steps: list[str] = []
    module = default_module
    for raw in split_steps(path[1:]):
        match = _STEP.fullmatch(raw)
        if match is None:
            return None
        module = match.group("module") or module
        if module not in modules:
            return None
        used[module] = modules[module]
        predicates = _predicates(match.group("predicates"), module, modules, used)
        if predicates is None:
            return None
        steps.append(f"{module}:{match.group('name')}{predicates}")
    return ErrorPath("/" + "/".join(steps), tuple(sorted(used.items())))


def _predicates(
    text: str, module: str, modules: Mapping[str, str], used: dict[str, str]
) -> str | None:
    out: list[str] = []
    position = 0
    for match in _PREDICATE.finditer(text):
        if match.start() != position:
            return None
        position = match.end()
        if match.group("key") is None:
            out.append(match.group(0))  # [1] or [.='value']: no names to prefix
            continue
        key_module = match.group("module") or module
        if key_module not in modules:
            return None
        used[key_module] = modules[key_module]
        out.append(f"[{key_module}:{match.group('key')}={match.group('value')}]")
    return "".join(out) if position == len(text) else None
