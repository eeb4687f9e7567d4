"""What an edit does to a datastore, node by node: the creates, updates and deletes that NACM
checks (RFC 8341 §3.4.5), read from the edit (RFC 6241 §7.2 operations) and the target."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from lxml import etree

from agents.access.nacm import Access
from agents.access.paths import KeysOf, Path, child_step
from agents.datastore.tree import BASE_NS

_OPERATION = f"{{{BASE_NS}}}operation"


@dataclass(frozen=True)
class Change:
    access: Access
    path: Path


def edit_changes(
    target: etree._Element | None,
    config: etree._Element,
    default_operation: str,
    modules: Mapping[str, str],
    keys_of: KeysOf,
) -> list[Change]:
    """The changes the children of `config` make to `target` (a <data> wrapper of the
    datastore as it is; None: empty). `modules` maps namespace → module name."""
    return list(_walk(target, _elements(config), (), default_operation, modules, keys_of))


def replace_changes(
    target: etree._Element | None,
    source: etree._Element,
    modules: Mapping[str, str],
    keys_of: KeysOf,
) -> list[Change]:
    """The changes of replacing all of `target` by the children of `source` (copy-config)."""
    changes = list(_walk(target, _elements(source), (), "replace", modules, keys_of))
    if target is not None:
        present = {(child.tag) for child in _elements(source)}
        for child in _elements(target):
            if child.tag not in present:
                changes.append(Change(Access.DELETE, (child_step((), child, modules, keys_of),)))
    return changes


def _walk(
    target: etree._Element | None,
    nodes: list[etree._Element],
    parent: Path,
    inherited: str,
    modules: Mapping[str, str],
    keys_of: KeysOf,
) -> Iterator[Change]:
    for node in nodes:
        operation = node.get(_OPERATION, inherited)
        path = (*parent, child_step(parent, node, modules, keys_of))
        existing = _match(target, node, path, keys_of) if target is not None else None
        if operation in ("delete", "remove"):
            yield Change(Access.DELETE, path)
        elif operation == "create" or (existing is None and operation in ("merge", "replace")):
            yield from _created(node, path, modules, keys_of)
        elif existing is None:  # "none" on a missing node: only what is below may change
            yield from _walk(None, _elements(node), path, operation, modules, keys_of)
        elif not _elements(node) and not _elements(existing):  # a leaf (or empty node)
            changed = (node.text or "").strip() != (existing.text or "").strip()
            if changed or operation == "replace":
                yield Change(Access.UPDATE, path)
        else:
            yield from _walk(existing, _elements(node), path, operation, modules, keys_of)
            if operation == "replace":
                kept = {_identity(child, path, keys_of) for child in _elements(node)}
                for child in _elements(existing):
                    if _identity(child, path, keys_of) not in kept:
                        step = child_step(path, child, modules, keys_of)
                        yield Change(Access.DELETE, (*path, step))


def _created(
    node: etree._Element, path: Path, modules: Mapping[str, str], keys_of: KeysOf
) -> Iterator[Change]:
    yield Change(Access.CREATE, path)
    for child in _elements(node):
        yield from _created(
            child, (*path, child_step(path, child, modules, keys_of)), modules, keys_of
        )


def _identity(element: etree._Element, parent: Path, keys_of: KeysOf) -> tuple[str, ...]:
    """What tells `element` apart among its siblings: tag, key values or leaf-list value."""
    names = (*(step.name for step in parent), etree.QName(element).localname)
    keys = keys_of(names)
    if keys:
        namespace = etree.QName(element).namespace
        values = tuple((element.findtext(f"{{{namespace}}}{key}") or "").strip() for key in keys)
        return (str(element.tag), *values)
    return (str(element.tag),)


def _match(
    target: etree._Element, node: etree._Element, path: Path, keys_of: KeysOf
) -> etree._Element | None:
    parent = path[:-1]
    wanted = _identity(node, parent, keys_of)
    candidates = list(target.iterchildren(node.tag))
    # Several same-named leaves are a leaf-list: its entries are told apart by value.
    by_value = len(wanted) == 1 and len(candidates) > 1 and not _elements(node)
    for candidate in candidates:
        if _identity(candidate, parent, keys_of) != wanted:
            continue
        if by_value and (candidate.text or "").strip() != (node.text or "").strip():
            continue
        return candidate
    return None


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]
