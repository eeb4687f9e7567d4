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
    tags = tuple(child.tag for child in wrapper if isinstance(child.tag, str))
    key = ("reads-whole", user, tags)
    if nacm.remembered(key, lambda: _reads_whole(wrapper, nacm, user, modules, keys_of)):
        return 0  # the usual reply: the same top-level nodes, each readable whole
    return _prune(wrapper, (), nacm, user, modules, keys_of)


def _reads_whole(
    wrapper: etree._Element, nacm: Nacm, user: str, modules: Mapping[str, str], keys_of: KeysOf
) -> bool:
    """Whether `user` reads every top-level node of `wrapper` and all below it; False for a
    top-level list (its entries' keys may decide), so the answer holds for these tags."""
    for child in wrapper:
        if not isinstance(child.tag, str):
            continue
        step = child_step((), child, modules, keys_of)
        if keys_of((step.name,)) or not nacm.permits_subtree(user, (step,), Access.READ):
            return False
    return True


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
