"""Change detection for on-change subscriptions: two snapshots of the selected data → the
edits of an RFC 8072 YANG Patch (create, delete, replace) naming only the nodes that changed.

Pure: elements in, edits out. Nodes are matched by name, list entries by their keys and
leaf-list entries by value; a changed leaf is a `replace` of that leaf, a node only in the
new snapshot a `create` with its subtree, one only in the old a `delete`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree

from agents.netconf.push.model import ChangeType

KeysOf = Callable[[etree._Element], tuple[str, ...]]
_Identity = tuple[str, ...]


@dataclass(frozen=True)
class Edit:
    """One edit of a YANG Patch: `target` is relative to the datastore root (RFC 8040 data
    resource identifier); `value` the target node's new content (create, replace)."""

    operation: ChangeType
    target: str
    value: etree._Element | None = None


def changes(
    old: Sequence[etree._Element],
    new: Sequence[etree._Element],
    keys_of: KeysOf,
    modules: Mapping[str, str],
) -> list[Edit]:
    """The edits that turn the top-level nodes `old` into `new`. `keys_of` names the key
    leaves of a list entry (empty for other nodes); `modules` maps namespace → module."""
    edits: list[Edit] = []
    _compare(list(old), list(new), "", None, keys_of, modules, edits)
    return edits


def without(edits: Sequence[Edit], excluded: frozenset[ChangeType]) -> list[Edit]:
    """The edits of kinds not excluded by the subscriber (RFC 8641 excluded-change)."""
    return [edit for edit in edits if edit.operation not in excluded]


def _compare(
    old: list[etree._Element],
    new: list[etree._Element],
    parent_path: str,
    parent_namespace: str | None,
    keys_of: KeysOf,
    modules: Mapping[str, str],
    edits: list[Edit],
) -> None:
    repeated = _repeated_names(old) | _repeated_names(new)
    old_by = {_identity(e, keys_of, repeated): e for e in old}
    new_by = {_identity(e, keys_of, repeated): e for e in new}
    for identity, gone in old_by.items():
        if identity not in new_by:
            path = _path(gone, parent_path, parent_namespace, keys_of, modules, repeated)
            edits.append(Edit(ChangeType.DELETE, path))
    for identity, after in new_by.items():
        path = _path(after, parent_path, parent_namespace, keys_of, modules, repeated)
        before = old_by.get(identity)
        if before is None:
            edits.append(Edit(ChangeType.CREATE, path, copy.deepcopy(after)))
            continue
        before_children, after_children = _children(before), _children(after)
        if not before_children and not after_children:
            if (before.text or "").strip() != (after.text or "").strip():
                edits.append(Edit(ChangeType.REPLACE, path, copy.deepcopy(after)))
            continue
        namespace = etree.QName(after).namespace
        _compare(before_children, after_children, path, namespace, keys_of, modules, edits)


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _repeated_names(elements: list[etree._Element]) -> frozenset[str]:
    """Tags that occur more than once: list or leaf-list entries."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for element in elements:
        tag = str(element.tag)
        (repeated if tag in seen else seen).add(tag)
    return frozenset(repeated)


def _key_values(element: etree._Element, keys_of: KeysOf) -> tuple[str, ...]:
    values = []
    for key in keys_of(element):
        leaf = element.find(f"{{{etree.QName(element).namespace}}}{key}")
        values.append((leaf.text or "").strip() if leaf is not None else "")
    return tuple(values)


def _identity(element: etree._Element, keys_of: KeysOf, repeated: frozenset[str]) -> _Identity:
    tag = str(element.tag)
    keys = _key_values(element, keys_of)
    if keys:
        return (tag, "keys", *keys)
    if tag in repeated and not _children(element):
        return (tag, "value", (element.text or "").strip())
    return (tag,)


def _path(
    element: etree._Element,
    parent_path: str,
    parent_namespace: str | None,
    keys_of: KeysOf,
    modules: Mapping[str, str],
    repeated: frozenset[str],
) -> str:
    """RFC 8040 §3.5.3: module-qualified where the namespace changes, `name=k1,k2` for a
    list entry, `name=value` for a leaf-list entry."""
    qname = etree.QName(element)
    name = qname.localname
    if qname.namespace != parent_namespace:
        name = f"{modules.get(qname.namespace or '', qname.namespace or '')}:{name}"
    keys = _key_values(element, keys_of)
    if keys:
        name += "=" + ",".join(quote(value, safe="") for value in keys)
    elif str(element.tag) in repeated and not _children(element):
        name += "=" + quote((element.text or "").strip(), safe="")
    return f"{parent_path}/{name}"
