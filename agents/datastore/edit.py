"""The edit engine: RFC 6241 §7.2 edit operations applied to an lxml data tree (pure, in place).

The caller passes a copy of the datastore: on any error the copy is thrown away, so the
datastore never holds half an edit. List entries are matched by their keys and leaf-list
entries by their value, using the schema shape of each node (`ShapeOf`). Errors are the
datastore's own (`DatastoreError`); a front end maps them to its protocol.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml import etree

from agents.datastore.errors import DatastoreError, ErrorItem, ErrorKind
from agents.datastore.tree import BASE_NS

OPERATION_ATTR = f"{{{BASE_NS}}}operation"
# A value such as "etsi-qkdn-types:VIRT" whose prefix must stay declared when it is moved.
_QNAME_VALUE = re.compile(r"^([A-Za-z_][\w.\-]*):[A-Za-z_][\w.\-]*$")
# Every "prefix:" inside a value (names in an XPath value, as in a NACM rule's path).
_VALUE_PREFIX = re.compile(r"(?<![\w.\-:])([A-Za-z_][\w.\-]*):(?=[A-Za-z_*])")


class Operation(enum.Enum):
    MERGE = "merge"
    REPLACE = "replace"
    CREATE = "create"
    DELETE = "delete"
    REMOVE = "remove"
    NONE = "none"


class NodeKind(enum.Enum):
    CONTAINER = "container"
    LIST = "list"
    LEAF = "leaf"
    LEAF_LIST = "leaf-list"


@dataclass(frozen=True)
class Shape:
    kind: NodeKind
    keys: tuple[str, ...] = ()


# Schema path (namespace, local name) from the top → its shape, or None if not in the schema.
SchemaPath = tuple[tuple[str, str], ...]
ShapeOf = Callable[[SchemaPath], Shape | None]


# Values an `operation` attribute may take ("none" is only a default-operation).
_ATTRIBUTE_OPERATIONS = frozenset(o.value for o in Operation if o is not Operation.NONE)


def parse_operation(text: str) -> Operation:
    """The value of an `operation` attribute (RFC 6241 §7.2); "none" is no attribute value."""
    if text not in _ATTRIBUTE_OPERATIONS:
        raise DatastoreError.of(
            ErrorKind.BAD_OPERATION, f"unknown operation {text!r}", attribute="operation"
        )
    return Operation(text)


def apply_edit(
    target: etree._Element,
    config: etree._Element,
    default_operation: Operation,
    shape_of: ShapeOf,
    errors: list[ErrorItem] | None = None,
    namespaces: frozenset[str] = frozenset(),
) -> None:
    """Apply the children of `config` to the children of `target`.

    With `errors` None the first error raises DatastoreError; otherwise each failing node is
    skipped and its error appended (continue-on-error). A node whose namespace is not in
    `namespaces` (those of the served modules) is unknown-namespace, not unknown-element.
    """
    editor = _Editor(shape_of, errors, namespaces)
    for node in _elements(config):
        editor.apply(target, node, default_operation, ())


class _Editor:
    def __init__(
        self, shape_of: ShapeOf, errors: list[ErrorItem] | None, namespaces: frozenset[str]
    ) -> None:
        self._shape_of = shape_of
        self._errors = errors
        self._namespaces = namespaces

    def apply(
        self,
        target_parent: etree._Element,
        node: etree._Element,
        inherited: Operation,
        parent_path: SchemaPath,
    ) -> None:
        try:
            self._apply(target_parent, node, inherited, parent_path)
        except DatastoreError as error:
            if self._errors is None:
                raise
            self._errors.extend(error.errors)

    def _apply(
        self,
        target_parent: etree._Element,
        node: etree._Element,
        inherited: Operation,
        parent_path: SchemaPath,
    ) -> None:
        qname = etree.QName(node)
        path: SchemaPath = (*parent_path, (qname.namespace or "", qname.localname))
        shape = self._shape_of(path) if qname.namespace else None
        if shape is None and self._namespaces and qname.namespace not in self._namespaces:
            raise DatastoreError.of(
                ErrorKind.UNKNOWN_NAMESPACE,
                f"<{qname.localname}> is in no served namespace ({qname.namespace or 'none'})",
                path=self._error_path(target_parent, node),
                element=qname.localname,
                namespace=qname.namespace or "",
            )
        if shape is None:
            raise DatastoreError.of(
                ErrorKind.UNKNOWN_ELEMENT,
                f"{qname.localname!r} is not in the schema here",
                path=self._error_path(target_parent, node),
                element=qname.localname,
            )
        own = node.get(OPERATION_ATTR)
        operation = parse_operation(own) if own is not None else inherited
        existing = _find_match(target_parent, node, shape)

        if operation in (Operation.DELETE, Operation.REMOVE):
            if existing is None:
                if operation is Operation.DELETE:
                    raise DatastoreError.of(
                        ErrorKind.DATA_MISSING,
                        "delete of data that does not exist",
                        path=self._error_path(target_parent, node),
                    )
                return
            target_parent.remove(existing)
            return
        if operation is Operation.CREATE and existing is not None:
            raise DatastoreError.of(
                ErrorKind.DATA_EXISTS,
                "create of data that already exists",
                path=self._error_path(target_parent, node),
            )
        if shape.kind in (NodeKind.LEAF, NodeKind.LEAF_LIST):
            if operation is Operation.NONE:
                return
            fresh = _copy_leaf(node)
            if existing is None:
                _insert(target_parent, fresh)
            else:
                target_parent.replace(existing, fresh)
            return
        # Container or list entry.
        if operation in (Operation.CREATE, Operation.REPLACE):
            fresh = _new_like(node)
            if existing is None:
                _insert(target_parent, fresh)
            else:
                target_parent.replace(existing, fresh)
            for child in _elements(node):
                self.apply(fresh, child, Operation.MERGE, path)
            return
        if existing is not None:
            for child in _elements(node):
                self.apply(existing, child, operation, path)
            return
        # Missing container or entry under merge or none: build it detached and attach it
        # only if the edit put something in it beyond its keys.
        fresh = _new_like(node)
        for key in shape.keys:
            key_node = _child_named(node, key)
            if key_node is None:
                raise DatastoreError.of(
                    ErrorKind.MISSING_KEY,
                    f"list entry without its key {key!r}",
                    path=self._error_path(target_parent, node),
                    element=key,
                )
            fresh.append(_copy_leaf(key_node))
        for child in _elements(node):
            if etree.QName(child).localname in shape.keys:
                continue
            self.apply(fresh, child, operation, path)
        if operation is Operation.MERGE or len(fresh) > len(shape.keys):
            _insert(target_parent, fresh)

    def _error_path(self, parent: etree._Element, node: etree._Element) -> str:
        """An XPath-like location of `node` (libyang style), list keys as predicates."""
        chain = [node]
        ancestor: etree._Element | None = parent
        while ancestor is not None and etree.QName(ancestor).namespace != BASE_NS:
            chain.append(ancestor)
            ancestor = ancestor.getparent()
        chain.reverse()
        steps: list[str] = []
        path: SchemaPath = ()
        for element in chain:
            qname = etree.QName(element)
            path = (*path, (qname.namespace or "", qname.localname))
            shape = self._shape_of(path)
            step = qname.localname
            for key in shape.keys if shape is not None else ():
                key_node = _child_named(element, key)
                if key_node is not None:
                    step += f"[{key}='{(key_node.text or '').strip()}']"
            steps.append(step)
        return "/" + "/".join(steps)


def _find_match(
    parent: etree._Element, node: etree._Element, shape: Shape
) -> etree._Element | None:
    for candidate in parent.iterchildren(node.tag):
        if shape.kind is NodeKind.LEAF_LIST:
            if _same_value(candidate, node):
                return candidate
        elif shape.kind is NodeKind.LIST:
            if all(_key_equal(candidate, node, key) for key in shape.keys):
                return candidate
        else:
            return candidate
    return None


def _key_equal(entry: etree._Element, node: etree._Element, key: str) -> bool:
    mine = _child_named(entry, key)
    theirs = _child_named(node, key)
    if theirs is None:
        raise DatastoreError.of(
            ErrorKind.MISSING_KEY, f"list entry without its key {key!r}", element=key
        )
    return mine is not None and _same_value(mine, theirs)


def _same_value(a: etree._Element, b: etree._Element) -> bool:
    text_a = (a.text or "").strip()
    text_b = (b.text or "").strip()
    if text_a == text_b:
        return True
    qname_a = _resolve_qname(a, text_a)
    return qname_a is not None and qname_a == _resolve_qname(b, text_b)


def _resolve_qname(element: etree._Element, text: str) -> tuple[str, str] | None:
    match = _QNAME_VALUE.match(text)
    if match is None:
        return None
    namespace = element.nsmap.get(match.group(1))
    return (namespace, text.partition(":")[2]) if namespace else None


def _child_named(parent: etree._Element, local: str) -> etree._Element | None:
    for child in _elements(parent):
        if etree.QName(child).localname == local:
            return child
    return None


def _new_like(node: etree._Element) -> etree._Element:
    """An empty element with the same name: no attributes (they were edit instructions)."""
    return etree.Element(node.tag)


def _copy_leaf(node: etree._Element) -> etree._Element:
    """A leaf copy that keeps declared every prefix its value uses: an identityref
    ("t:VIRT") or an XPath such as a NACM rule's path ("/q:qkd_node/q:qkd_links")."""
    text = (node.text or "").strip()
    nsmap: dict[str, str] = {}
    for prefix in _VALUE_PREFIX.findall(text):
        namespace = node.nsmap.get(prefix)
        if namespace is not None:
            nsmap[prefix] = namespace
    fresh = etree.Element(node.tag, nsmap=nsmap) if nsmap else etree.Element(node.tag)
    fresh.text = text
    return fresh


def _insert(parent: etree._Element, child: etree._Element) -> None:
    """Append after the last sibling of the same name, so list entries stay together."""
    last = None
    for candidate in parent.iterchildren(child.tag):
        last = candidate
    if last is None:
        parent.append(child)
    else:
        last.addnext(child)


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    return (child for child in parent if isinstance(child.tag, str))
