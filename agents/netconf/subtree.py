"""RFC 6241 §6 subtree filtering, as a pure function of a data tree and a filter.

A filter node is a containment node (has element children), a selection node (empty) or a
content-match node (text only). Sibling content-match nodes must all match for their parent
to be selected; a parent whose filter children are only content-match nodes is selected
whole. A filter node without a namespace matches any namespace (RFC 6241 §6.2.1).
Several filter siblings naming the same data node select the union of what each selects.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from lxml import etree

# Given a data element, the local names of its list keys (empty if it is no list entry).
KeysOf = Callable[[etree._Element], tuple[str, ...]]


class _Mark(enum.Enum):
    FULL = "full"  # the whole subtree is selected
    PARTIAL = "partial"  # only marked descendants are selected


def filter_subtree(
    data_roots: Sequence[etree._Element],
    filter_nodes: Sequence[etree._Element],
    keys_of: KeysOf | None = None,
) -> list[etree._Element]:
    """Copies of the parts of `data_roots` selected by the children of a <filter>.

    An empty filter selects nothing (RFC 6241 §6.4.2).
    """
    marks: dict[etree._Element, _Mark] = {}
    for filter_node in _elements(filter_nodes):
        for data in data_roots:
            if _name_matches(filter_node, data):
                _select(filter_node, data, marks, keys_of)
    return [_build(data, marks) for data in data_roots if data in marks]


def _select(
    filter_node: etree._Element,
    data: etree._Element,
    marks: dict[etree._Element, _Mark],
    keys_of: KeysOf | None,
) -> bool:
    """Marks what `filter_node` selects in `data`; True when `data` is selected."""
    filter_children = list(_elements(filter_node))
    if not filter_children:
        if _is_content_match(filter_node) and not _text_matches(filter_node, data):
            return False
        marks[data] = _Mark.FULL
        return True
    content_matches = [child for child in filter_children if _is_content_match(child)]
    matched_leaves: list[etree._Element] = []
    for content_match in content_matches:
        hits = [
            leaf
            for leaf in _elements(data)
            if _name_matches(content_match, leaf) and _text_matches(content_match, leaf)
        ]
        if not hits:
            return False
        matched_leaves.extend(hits)
    others = [child for child in filter_children if not _is_content_match(child)]
    if not others:
        marks[data] = _Mark.FULL
        return True
    selected_any = False
    for other in others:
        for data_child in _elements(data):
            if _name_matches(other, data_child) and _select(other, data_child, marks, keys_of):
                selected_any = True
    if not selected_any and not content_matches:
        return False
    for leaf in matched_leaves:
        marks[leaf] = _Mark.FULL
    if keys_of is not None:
        # A list entry is useless without its keys: always return them.
        for key in keys_of(data):
            for leaf in _elements(data):
                if etree.QName(leaf).localname == key:
                    marks[leaf] = _Mark.FULL
    if marks.get(data) is not _Mark.FULL:
        marks[data] = _Mark.PARTIAL
    return True


def _build(data: etree._Element, marks: dict[etree._Element, _Mark]) -> etree._Element:
    if marks[data] is _Mark.FULL:
        return copy.deepcopy(data)
    # Keep the prefix declarations: identityref values in the copy refer to them.
    nsmap = cast("dict[str, str]", data.nsmap)  # lxml-stubs do not allow the None key
    result = etree.Element(data.tag, nsmap=nsmap)
    for child in _elements(data):
        if child in marks:
            result.append(_build(child, marks))
    return result


def _elements(parent: Iterable[etree._Element]) -> Iterable[etree._Element]:
    """Element children only: comments and processing instructions are not filter nodes."""
    return (child for child in parent if isinstance(child.tag, str))


def _is_content_match(node: etree._Element) -> bool:
    return len(node) == 0 and bool((node.text or "").strip())


def _name_matches(filter_node: etree._Element, data: etree._Element) -> bool:
    wanted = etree.QName(filter_node)
    found = etree.QName(data)
    if wanted.localname != found.localname:
        return False
    return wanted.namespace is None or wanted.namespace == found.namespace


def _text_matches(filter_node: etree._Element, data: etree._Element) -> bool:
    wanted = (filter_node.text or "").strip()
    found = (data.text or "").strip()
    if wanted == found:
        return True
    # Identityref values: the same identity may be written with different prefixes.
    wanted_qname = _resolve_qname(filter_node, wanted)
    return wanted_qname is not None and wanted_qname == _resolve_qname(data, found)


def _resolve_qname(element: etree._Element, text: str) -> tuple[str, str] | None:
    prefix, colon, name = text.partition(":")
    if not colon:
        return None
    namespace = element.nsmap.get(prefix)
    return (namespace, name) if namespace else None
