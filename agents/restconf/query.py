"""RFC 8040 §4.8 query parameters of a GET: content, depth, fields; parsed and applied
to RFC 7951 JSON values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.restconf.errors import RestconfError

FieldTree = dict[str, "FieldTree | None"]  # name → what to keep below it (None: all)


class Content(enum.Enum):
    ALL = "all"
    CONFIG = "config"
    NONCONFIG = "nonconfig"


@dataclass(frozen=True)
class ReadQuery:
    content: Content = Content.ALL
    depth: int | None = None  # None: unbounded
    fields: FieldTree | None = None


KNOWN = ("content", "depth", "fields", "with-defaults")


def parse_query(params: Mapping[str, list[str]]) -> ReadQuery:
    """The read parameters; an unknown or repeated one, or a bad value, is invalid-value."""
    for name, values in params.items():
        if name not in KNOWN:
            raise _bad(f"unknown query parameter {name!r} (known: {', '.join(KNOWN)})")
        if len(values) != 1:
            raise _bad(f"query parameter {name!r} given {len(values)} times")
    content = Content.ALL
    if "content" in params:
        text = params["content"][0]
        try:
            content = Content(text)
        except ValueError:
            raise _bad(f"content must be all, config or nonconfig, not {text!r}") from None
    depth: int | None = None
    if "depth" in params:
        text = params["depth"][0]
        if text != "unbounded":
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise _bad(f"depth must be 1..65535 or unbounded, not {text!r}")
            depth = int(text)
    fields = parse_fields(params["fields"][0]) if "fields" in params else None
    if "with-defaults" in params and params["with-defaults"][0] not in ("explicit", "trim"):
        raise _bad("with-defaults: only explicit (the default) and trim are supported")
    return ReadQuery(content, depth, fields)


def parse_fields(text: str) -> FieldTree:
    """`a;b/c(d;e)` → {"a": None, "b": {"c": {"d": None, "e": None}}}."""
    tree, position = _fields(text, 0)
    if position != len(text):
        raise _bad(f"fields: unexpected {text[position]!r} at {position}")
    return tree


def _fields(text: str, position: int) -> tuple[FieldTree, int]:
    tree: FieldTree = {}
    while True:
        start = position
        while position < len(text) and text[position] not in ";()":
            position += 1
        path = [part for part in text[start:position].split("/")]
        if not all(path):
            raise _bad(f"fields: empty name at {start}")
        below: FieldTree | None = None
        if position < len(text) and text[position] == "(":
            below, position = _fields(text, position + 1)
            if position >= len(text) or text[position] != ")":
                raise _bad("fields: unbalanced '('")
            position += 1
        _merge(tree, path, below)
        if position < len(text) and text[position] == ";":
            position += 1
            continue
        return tree, position


def _merge(tree: FieldTree, path: list[str], below: FieldTree | None) -> None:
    node = tree
    for name in path[:-1]:
        child = node.get(name)
        if child is None:
            child = {}
            node[name] = child
        node = child
    node[path[-1]] = below


def _local(member: str) -> str:
    return member.rpartition(":")[2]


def select_fields(value: Any, fields: FieldTree) -> Any:
    """`value` (an object, or a list of entries) with only the members `fields` names."""
    if isinstance(value, list):
        return [select_fields(entry, fields) for entry in value]
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for member, child in value.items():
        if _local(member) not in fields:
            continue
        wanted = fields[_local(member)]
        kept[member] = child if wanted is None else select_fields(child, wanted)
    return kept


def limit_depth(value: Any, depth: int, level: int = 1) -> Any:
    """`value` (at `level`, the target being 1) without the data nodes deeper than `depth`."""
    if isinstance(value, list):
        return [limit_depth(entry, depth, level) for entry in value]
    if not isinstance(value, dict):
        return value
    if level >= depth:
        return {}
    return {member: limit_depth(child, depth, level + 1) for member, child in value.items()}


def _bad(message: str) -> RestconfError:
    return RestconfError.of("protocol", "invalid-value", message)
