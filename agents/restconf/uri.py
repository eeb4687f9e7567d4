"""RESTCONF data resource identifiers (RFC 8040 §3.5.3): `/restconf/data/etsi-qkd-sdn-node:
qkd_node/qkd_links/qkd_link=ID` as steps (module, name, key values), checked against the
schema, and back as a location."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from agents.restconf.errors import RestconfError
from yang.schema import NodeInfo

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class Segment:
    module: str  # the module of the node (inherited from the parent when not written)
    name: str
    keys: tuple[str, ...] = ()  # key values in the list's key order
    qualified: bool = False  # written as module:name in the URI


@dataclass(frozen=True)
class Target:
    """A data resource: its segments and the schema node of the last one."""

    segments: tuple[Segment, ...]
    info: NodeInfo

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(segment.name for segment in self.segments)


NodeInfoOf = Callable[[tuple[str, ...]], NodeInfo | None]


def parse_target(path: str, modules: Mapping[str, str], node_info: NodeInfoOf) -> Target:
    """The resource at `path` (what follows /restconf/data/, still percent-encoded)."""
    raw = [part for part in path.split("/")]
    if raw and raw[-1] == "":
        raw = raw[:-1]  # a trailing slash, as some clients write it
    if not raw or not raw[0]:
        raise _bad("empty data resource path")
    segments: list[Segment] = []
    module: str | None = None
    for index, text in enumerate(raw):
        name_part, has_keys, key_part = text.partition("=")
        name_part = unquote(name_part)
        prefix, colon, local = name_part.rpartition(":")
        if colon:
            if prefix not in modules:
                raise RestconfError.of(
                    "application", "unknown-element", f"unknown module {prefix!r} in the path"
                )
            module = prefix
        elif index == 0:
            raise _bad(f"the first path segment {name_part!r} needs its module (module:name)")
        if not local or not set(local) <= _NAME_CHARS:
            raise _bad(f"bad node name {name_part!r} in the path")
        names = (*(s.name for s in segments), local)
        info = node_info(names)
        assert module is not None
        if info is None or info.module != module:
            raise RestconfError.of(
                "application",
                "unknown-element",
                f"no data node {'/'.join(names)!r} in module {module!r}",
                status=404,
            )
        keys: tuple[str, ...] = ()
        if has_keys:
            if info.kind not in ("list", "leaf-list"):
                raise _bad(f"{local!r} is no list: it takes no key values")
            keys = tuple(unquote(value) for value in key_part.split(","))
            expected = len(info.keys) if info.kind == "list" else 1
            if len(keys) != expected:
                raise _bad(f"{local!r} needs {expected} key value(s), got {len(keys)}")
        elif info.kind == "list" and index < len(raw) - 1:
            raise _bad(f"list {local!r} needs its key values (name=value) before a child")
        segments.append(Segment(module, local, keys, bool(colon)))
    last = node_info(tuple(s.name for s in segments))
    assert last is not None
    return Target(tuple(segments), last)


def location(segments: tuple[Segment, ...]) -> str:
    """The URI path of a resource, below /restconf/data/."""
    parts = []
    previous: str | None = None
    for segment in segments:
        name = segment.name if segment.module == previous else f"{segment.module}:{segment.name}"
        if segment.keys:
            name += "=" + ",".join(quote(key, safe="") for key in segment.keys)
        parts.append(name)
        previous = segment.module
    return "/".join(parts)


def _bad(message: str) -> RestconfError:
    return RestconfError.of("protocol", "invalid-value", message)
