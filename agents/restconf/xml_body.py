"""An XML request body (`application/yang-data+xml`) as the RFC 7951 member a JSON body gives.

The body's one element is placed below its ancestors (list keys from the URI), libyang
converts that to JSON, and the value at the element is taken out: a write with an XML body
is then the same edit as one with the JSON body, through the same checks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from lxml import etree

from agents.datastore.tree import base_element
from agents.restconf import tree
from agents.restconf.errors import RestconfError
from agents.restconf.tree import NodeInfoOf
from agents.restconf.uri import Segment
from yang.schema import InvalidDataError

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, remove_blank_text=True, huge_tree=False
)
# libyang's words for a name or namespace the schema does not have
_UNKNOWN = ("not found", "No module with namespace", "which no loaded YANG module has")


def parse(body: bytes) -> etree._Element:
    """The body's element; malformed-message naming what is wrong when it is not XML."""
    try:
        element = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise RestconfError.of(
            "protocol", "malformed-message", f"the body is not well-formed XML: {error}"
        ) from None
    if element.getroottree().docinfo.internalDTD is not None:
        raise RestconfError.of("protocol", "malformed-message", "a DOCTYPE is not accepted")
    return element


def member(
    body: bytes,
    parent: tuple[Segment, ...],
    namespaces: Mapping[str, str],
    info: NodeInfoOf,
    to_json: Callable[[str], dict[str, Any]],
) -> tuple[str, Any]:
    """(member name, value) of the body's element, as a child of the resource `parent`
    (() for the datastore): unknown-element for a namespace or name the schema lacks."""
    element = parse(body)
    qname = etree.QName(element)
    modules = {namespace: module for module, namespace in namespaces.items()}
    module = modules.get(qname.namespace or "")
    if module is None:
        raise RestconfError.of(
            "application",
            "unknown-element",
            f"element {qname.localname!r} is in namespace {qname.namespace or ''!r}, "
            "which no module of this server has",
        )
    if parent:
        config, holder = tree.edit_xml(parent, namespaces, info)
    else:
        config = holder = base_element("config")
    holder.append(copy.deepcopy(element))
    try:
        doc = to_json(etree.tostring(config).decode("utf-8"))
    except InvalidDataError as error:
        first = error.errors[0]
        tag = "unknown-element" if any(w in first.message for w in _UNKNOWN) else "invalid-value"
        raise RestconfError.of(
            "application", tag, f"the body is not valid data: {first.message}", path=first.path
        ) from None
    holding = tree.find(doc, parent, info) if parent else doc
    name = tree.member(Segment(module, qname.localname), parent[-1] if parent else None)
    value = holding.get(name, {}) if isinstance(holding, dict) else {}
    return f"{module}:{qname.localname}", value
