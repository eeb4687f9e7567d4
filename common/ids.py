"""Identifiers derived from names (uuid5), so a node or link keeps its id across runs."""

from __future__ import annotations

import uuid

# Namespace of every uuid5 the project derives from a name.
QKDSDN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:qkdsdn")


def node_uuid(name: str) -> str:
    """The `qkdn_id` of the node called `name`."""
    return str(uuid.uuid5(QKDSDN_NAMESPACE, f"node:{name}"))


def link_uuid(a: str, b: str) -> str:
    """The `qkdl_id` of the physical link between nodes `a` and `b` (order does not matter)."""
    first, second = sorted((a, b))
    return str(uuid.uuid5(QKDSDN_NAMESPACE, f"link:{first}:{second}"))
