"""The XML names the controller speaks: ETSI GS QKD 015 namespaces and our augment."""

from __future__ import annotations

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
    attr_text = "".join(f" {name.replace('__', ':')}={quoteattr(v)}" for name, v in attrs.items())
    body = escape(str(text)) if text is not None else "".join(children)
    return f"<{tag}{attr_text}>{body}</{tag}>"


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
