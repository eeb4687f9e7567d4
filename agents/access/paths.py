"""Data node paths as NACM sees them: steps of (module, name, keys), parsed from the
instance-identifier text of a rule (`/etsi-qkd-sdn-node:qkd_node/qkd_links`) or built from
a data element."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from lxml import etree

_NAME = r"[^\W\d][\w.\-]*"
_STEP = re.compile(
    rf"""(?:(?P<module>{_NAME}):)?(?P<name>{_NAME}|\*)
        (?P<predicates>(?:\[(?:'[^']*'|"[^"]*"|[^\]'"])*\])*)""",
    re.VERBOSE,
)
_KEY = re.compile(
    rf"""\[\s*(?:{_NAME}:)?(?P<key>{_NAME})\s*=\s*(?:'(?P<q1>[^']*)'|"(?P<q2>[^"]*)")\s*\]"""
)


class PathError(ValueError):
    """A path that is no absolute instance-identifier (the message says where)."""


class Step(NamedTuple):
    """One node on a path. `keys` are (name, value) pairs; in a rule they may be fewer than
    the list has (a missing key matches every entry). A named tuple: decisions are
    remembered by path, and a tuple hashes and compares in C."""

    module: str
    name: str
    keys: tuple[tuple[str, str], ...] = ()


Path = tuple[Step, ...]
# Names from the top → the key names of the list there (empty for any other node).
KeysOf = Callable[[tuple[str, ...]], tuple[str, ...]]


def split_steps(path: str) -> list[str]:
    """The steps of a path without its leading '/'; a '/' inside a predicate does not split."""
    steps: list[str] = []
    current: list[str] = []
    depth = 0
    quote: str | None = None
    for char in path:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "/" and depth == 0:
            steps.append("".join(current))
            current = []
            continue
        current.append(char)
    steps.append("".join(current))
    return steps


def parse_path(text: str, prefixes: Mapping[str, str] | None = None) -> Path:
    """A rule's path. Step prefixes are module names (RFC 7951 form) or, through `prefixes`
    (prefix → module name), XML prefixes; an unprefixed step belongs to its parent's
    module. "/" is the empty path: every node."""
    text = text.strip()
    if not text.startswith("/"):
        raise PathError(f"path {text!r} does not start with '/'")
    if text == "/":
        return ()
    steps: list[Step] = []
    module: str | None = None
    for raw in split_steps(text[1:]):
        match = _STEP.fullmatch(raw.strip())
        if match is None:
            raise PathError(f"path {text!r}: cannot read step {raw!r}")
        prefix = match.group("module")
        if prefix is not None:
            module = (prefixes or {}).get(prefix, prefix)
        if module is None:
            raise PathError(f"path {text!r}: the first step needs a module prefix")
        predicates = match.group("predicates")
        keys = tuple(
            (key.group("key"), key.group("q1") if key.group("q1") is not None else key.group("q2"))
            for key in _KEY.finditer(predicates)
        )
        if _KEY.sub("", predicates).strip():
            raise PathError(f"path {text!r}: only [key='value'] predicates are allowed")
        steps.append(Step(module, match.group("name"), keys))
    return tuple(steps)


def covers(rule: Path, node: Path) -> bool:
    """Whether a rule's path selects `node` (the node itself or one of its ancestors)."""
    if len(rule) > len(node):
        return False
    for wanted, step in zip(rule, node, strict=False):
        if wanted.name != "*" and (wanted.name, wanted.module) != (step.name, step.module):
            return False
        present = dict(step.keys)
        if any(present.get(key, value) != value for key, value in wanted.keys):
            return False
    return True


def may_reach_below(rule: Path, node: Path) -> bool:
    """Whether a rule's path could select a strict descendant of `node` and not `node`
    itself: only then may a decision inside the subtree differ from the node's."""
    if len(rule) <= len(node):
        return False
    return covers(rule[: len(node)], node)


def element_path(
    element: etree._Element,
    modules: Mapping[str, str],
    keys_of: KeysOf,
    stop_namespace: str,
) -> Path:
    """The path of a data element, up to (not including) an ancestor in `stop_namespace`
    (the <data>/<config> wrapper). `modules`: namespace → module name."""
    chain: list[etree._Element] = []
    node: etree._Element | None = element
    while node is not None and etree.QName(node).namespace != stop_namespace:
        chain.append(node)
        node = node.getparent()
    chain.reverse()
    steps: list[Step] = []
    for item in chain:
        steps.append(child_step(tuple(steps), item, modules, keys_of))
    return tuple(steps)


def child_step(
    parent: Path, element: etree._Element, modules: Mapping[str, str], keys_of: KeysOf
) -> Step:
    """The step of `element` below `parent` (its keys read from its key children)."""
    tag = element.tag
    namespace, _, localname = tag[1:].partition("}") if tag[0] == "{" else ("", "", tag)
    module = modules.get(namespace, namespace)
    names = (*(step.name for step in parent), localname)
    keys: list[tuple[str, str]] = []
    for key in keys_of(names):
        child = element.find(f"{{{namespace}}}{key}")
        if child is not None:
            keys.append((key, (child.text or "").strip()))
    return Step(module, localname, tuple(keys))
