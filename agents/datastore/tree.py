"""The lxml form of the datastore's trees: the <data> wrapper, parsing and serializing.

A datastore holds a `<data>` element whose children are the top data nodes. The wrapper and
the edit `operation` attribute are in the ietf-netconf base namespace, as in the edits
sysrepo takes; that is a data format, not the NETCONF protocol.
"""

from __future__ import annotations

import copy
import threading
from typing import cast

from lxml import etree

from agents.datastore.errors import DatastoreError, ErrorKind

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def base_element(local: str, namespace: str = BASE_NS) -> etree._Element:
    """An element that declares its namespace as the default one (no ns0: prefixes)."""
    nsmap = cast("dict[str, str]", {None: namespace})  # lxml-stubs do not allow the None key
    return etree.Element(f"{{{namespace}}}{local}", nsmap=nsmap)


_parsers = threading.local()  # an lxml parser serves one thread at a time


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
        _parsers.parser = parser
    return parser


def parse(xml: str) -> etree._Element:
    """A data document; malformed XML is an invalid value."""
    try:
        return etree.fromstring(xml.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as error:
        raise DatastoreError.of(ErrorKind.INVALID_VALUE, f"malformed data: {error}") from error


def parse_wrapped(xml: str) -> etree._Element:
    """A <data> wrapper around the top-level nodes printed in `xml` (one, several or none:
    libyang prints siblings side by side, which is no XML document by itself)."""
    return wrap_children(parse(f'<data xmlns="{BASE_NS}">{xml}</data>'))


def wrap(root: etree._Element) -> etree._Element:
    """A <data> wrapper around a <qkd_node> (or the children of a <config>/<data>)."""
    if etree.QName(root).localname in ("data", "config"):
        return wrap_children(root)
    wrapper = base_element("data")
    wrapper.append(root)
    return wrapper


def wrap_children(parent: etree._Element) -> etree._Element:
    """A <data> wrapper holding detached copies of the element children of `parent`."""
    wrapper = base_element("data")
    for child in parent:
        if isinstance(child.tag, str):
            wrapper.append(adopt(child))
    return wrapper


def serialize(wrapper: etree._Element) -> str:
    """The data nodes inside the wrapper, as libyang reads them."""
    children = [child for child in wrapper if isinstance(child.tag, str)]
    if len(children) == 1:
        return etree.tostring(children[0], encoding="unicode")
    return etree.tostring(wrapper, encoding="unicode")


def adopt(element: etree._Element) -> etree._Element:
    """A detached copy whose root declares every namespace in scope of `element`.

    lxml copies declarations only for prefixes used in names; identityref values such as
    "t:VIRT" use a prefix in text, which must stay declared when the node leaves its parent.
    """
    nsmap = cast("dict[str, str]", element.nsmap)  # lxml-stubs do not allow the None key
    adopted = etree.Element(element.tag, nsmap=nsmap)
    adopted.text = element.text
    for child in element:
        adopted.append(copy.deepcopy(child))
    return adopted
