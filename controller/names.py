"""The XML names the controller speaks: ETSI GS QKD 015 namespaces and our augment."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
QKD_NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
TYPES_PREFIX = "etsi-qkdn-types"
SDN_NS = "urn:qkdsdn:yang:qkdsdn-node"

QKD_NODE_FILTER = f'<qkd_node xmlns="{QKD_NS}"/>'


def q(tag: str, ns: str = QKD_NS) -> str:
    """ElementTree's qualified name of a tag in a namespace."""
    return f"{{{ns}}}{tag}"


def element(tag: str, *children: str, text: str | int | None = None, **attrs: str) -> str:
    """An XML element as text; `text` is escaped, children are already XML."""
    attr_text = (
        "".join(f" {name.replace('__', ':')}={_quoted(v)}" for name, v in attrs.items())
        if attrs
        else ""
    )
    if text is None:
        body = "".join(children)
    else:
        body = str(text)
        if _TEXT_SPECIAL.search(body) is not None:  # ids and numbers seldom need it
            body = escape(body)
    return f"<{tag}{attr_text}>{body}</{tag}>"


_TEXT_SPECIAL = re.compile(r"[&<>]")
_ATTR_SPECIAL = re.compile("[&<>\"'\n\r\t]")


def _quoted(value: str) -> str:
    """`quoteattr(value)`, without its replacements when nothing needs one."""
    return f'"{value}"' if _ATTR_SPECIAL.search(value) is None else quoteattr(value)


def identity(tag: str, value: str) -> str:
    """An etsi-qkd-node-types identityref leaf with its prefix declared, as ETSI peers expect."""
    return element(
        tag,
        text=f"{TYPES_PREFIX}:{value}",
        **{f"xmlns__{TYPES_PREFIX}": TYPES_NS},
    )


def identity_name(text: str | None) -> str:
    """`VIRT` from `etsi-qkdn-types:VIRT`, `etsi-qkd-node-types:VIRT` or `VIRT`."""
    return (text or "").strip().rpartition(":")[2]
