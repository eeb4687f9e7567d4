"""Which NETCONF operations change configuration, and their audit record (who, role,
action, target, outcome) in the agent's append-only log (common.audit)."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from agents.netconf.errors import BASE_NS, ErrorTag, RpcError
from agents.netconf.state import SessionHandle

# Operation → the datastore it changes when it names none itself.
AUDITED = {
    "edit-config": None,
    "copy-config": None,
    "commit": "running",
    "cancel-commit": "running",
    "discard-changes": "candidate",
}


_AUDITED_TAGS = frozenset(f"{{{BASE_NS}}}{name}" for name in AUDITED)


def audited(operation: etree._Element) -> bool:
    return operation.tag in _AUDITED_TAGS


def record(session: SessionHandle, operation: etree._Element, errors: Sequence[RpcError]) -> None:
    """One entry for an audited operation: ok, refused (access denied) or failed."""
    agent = session.agent
    if agent.audit is None or not audited(operation):
        return
    name = etree.QName(operation).localname
    action = name
    if name == "commit" and operation.find(f"{{{BASE_NS}}}confirmed") is not None:
        action = "confirmed-commit"
    target = AUDITED[name] or _target(operation)
    if not errors:
        outcome = "ok"
    elif any(error.tag is ErrorTag.ACCESS_DENIED for error in errors):
        outcome = "refused"
    else:
        outcome = "failed"
    detail = "; ".join(f"{error.tag.value}: {error.message}" for error in errors)
    who = session.info.username or "-"
    agent.audit.record(who, _role(session, who), action, target, outcome, detail)


def _target(operation: etree._Element) -> str:
    target = operation.find(f"{{{BASE_NS}}}target")
    if target is not None:
        for child in target:
            if isinstance(child.tag, str):
                return etree.QName(child).localname
    return "?"


def _role(session: SessionHandle, who: str) -> str:
    access = session.agent.access
    if access is None:
        return "-"
    return ",".join(sorted(access.rules().groups_of(who))) or "-"
