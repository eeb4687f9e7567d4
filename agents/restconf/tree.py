"""RFC 7951 JSON trees along a resource path: find the value at a target, wrap a value in
its ancestors, and the XML edit (with `operation` attributes) a write makes of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lxml import etree

from agents.datastore.tree import BASE_NS, base_element
from agents.restconf.uri import Segment
from yang.schema import NodeInfo

NodeInfoOf = Callable[[tuple[str, ...]], NodeInfo | None]
OPERATION = f"{{{BASE_NS}}}operation"


def member(segment: Segment, parent: Segment | None) -> str:
    """The JSON member name of `segment` below `parent` (qualified where the module changes)."""
    if parent is None or parent.module != segment.module:
        return f"{segment.module}:{segment.name}"
    return segment.name


def text_of(value: Any) -> str:
    """A JSON scalar as the text of a key in a URI."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def find(doc: Mapping[str, Any], segments: tuple[Segment, ...], info: NodeInfoOf) -> Any:
    """The value at the resource (a list entry as its object); None if it is not there."""
    value: Any = doc
    parent: Segment | None = None
    for index, segment in enumerate(segments):
        if not isinstance(value, dict):
            return None
        value = value.get(member(segment, parent))
        if value is None:
            return None
        if segment.keys:
            node = info(tuple(s.name for s in segments[: index + 1]))
            value = _entry(value, segment.keys, node.keys if node is not None else ())
            if value is None:
                return None
        parent = segment
    return value


def _entry(values: Any, keys: tuple[str, ...], names: tuple[str, ...]) -> Any:
    if not isinstance(values, list):
        return None
    for item in values:
        if not names:  # a leaf-list: the entry is the value itself
            if text_of(item) == keys[0]:
                return item
        elif isinstance(item, dict) and all(
            text_of(item.get(name)) == key for name, key in zip(names, keys, strict=True)
        ):
            return item
    return None


def rooted(segments: tuple[Segment, ...], inner: Any, info: NodeInfoOf) -> dict[str, Any]:
    """`inner` (the value of the last segment) wrapped in its ancestors, keys included."""
    value = inner
    for index in range(len(segments) - 1, -1, -1):
        segment = segments[index]
        parent = segments[index - 1] if index else None
        if index < len(segments) - 1:
            child = segments[index + 1]
            value = {member(child, segment): value}
            if segment.keys:
                node = info(tuple(s.name for s in segments[: index + 1]))
                names = node.keys if node is not None else ()
                value = [{**dict(zip(names, segment.keys, strict=True)), **value}]
        if index == 0:
            return {member(segment, parent): value}
    raise ValueError("a resource has at least one segment")


def edit_xml(
    segments: tuple[Segment, ...],
    namespaces: Mapping[str, str],
    info: NodeInfoOf,
) -> tuple[etree._Element, etree._Element]:
    """A <config> holding the ancestors of the last segment (their keys as leaves) and an
    element for the last segment itself: (config, that element)."""
    config = base_element("config")
    parent = config
    for index, segment in enumerate(segments):
        namespace = namespaces[segment.module]
        element = etree.SubElement(parent, f"{{{namespace}}}{segment.name}")
        if segment.keys:
            node = info(tuple(s.name for s in segments[: index + 1]))
            names = node.keys if node is not None and node.kind == "list" else ()
            for name, value in zip(names, segment.keys, strict=True):
                etree.SubElement(element, f"{{{namespace}}}{name}").text = value
            if node is not None and node.kind == "leaf-list":
                element.text = segment.keys[0]
        parent = element
    return config, parent


def to_config(json_doc: dict[str, Any], to_xml: Callable[[dict[str, Any]], str]) -> etree._Element:
    """A <config> holding the XML (libyang's conversion) of a rooted JSON document."""
    text = to_xml(json_doc)
    return etree.fromstring(
        f'<config xmlns="{BASE_NS}">{text}</config>'.encode(),
        etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True),
    )


def locate(
    config: etree._Element,
    segments: tuple[Segment, ...],
    namespaces: Mapping[str, str],
    info: NodeInfoOf,
) -> etree._Element | None:
    """The element of the resource in a <config> (list entries matched by their keys)."""
    node = config
    for index, segment in enumerate(segments):
        tag = f"{{{namespaces[segment.module]}}}{segment.name}"
        schema = info(tuple(s.name for s in segments[: index + 1]))
        names = schema.keys if schema is not None and schema.kind == "list" else ()
        found = None
        for child in node.iterchildren(tag):
            if names and segment.keys:
                values = tuple(
                    (child.findtext(f"{{{namespaces[segment.module]}}}{n}") or "") for n in names
                )
                if values != segment.keys:
                    continue
            elif segment.keys and (child.text or "") != segment.keys[0]:
                continue
            found = child
            break
        if found is None:
            return None
        node = found
    return node


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
