"""Read access (RFC 8341 §3.4.5): a data tree with every node the user may not read left
out, silently; whole subtrees are kept or dropped at once where the rules allow."""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from agents.access.nacm import Access, Nacm
from agents.access.paths import KeysOf, Path, child_step


def prune(
    wrapper: etree._Element,
    nacm: Nacm,
    user: str,
    modules: Mapping[str, str],
    keys_of: KeysOf,
) -> int:
    """Remove from `wrapper` (a <data> element, changed in place) what `user` may not read;
    returns how many nodes were removed."""
    return _prune(wrapper, (), nacm, user, modules, keys_of)


def _prune(
    parent: etree._Element,
    path: Path,
    nacm: Nacm,
    user: str,
    modules: Mapping[str, str],
    keys_of: KeysOf,
) -> int:
    removed = 0
    for child in [c for c in parent if isinstance(c.tag, str)]:
        child_path = (*path, child_step(path, child, modules, keys_of))
        if not nacm.may_access(user, child_path, Access.READ):
            parent.remove(child)
            removed += 1
        elif not nacm.subtree_uniform(user, child_path, Access.READ):
            removed += _prune(child, child_path, nacm, user, modules, keys_of)
    return removed
