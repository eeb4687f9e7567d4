"""NACM at the NETCONF front end: may this session run this operation, what of a reply
may it read, may its edit change what it changes (RFC 8341 §3.4). The decisions are
agents.access's; here they meet sessions and <rpc-error>s."""

from __future__ import annotations

import functools

from lxml import etree

from agents.access.nacm import WRITES, Nacm
from agents.access.paths import Path, child_step
from agents.access.reads import prune
from agents.access.writes import Change, edit_changes, replace_changes
from agents.netconf.error_path import error_path
from agents.netconf.errors import BASE_NS, ErrorTag, ErrorType, NetconfError
from agents.netconf.monitoring import MONITORING_NS
from agents.netconf.push.model import SN_MODULE, SN_NS, YP_MODULE, YP_NS
from agents.netconf.state import AgentState, SessionHandle

NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
# The module each protocol operation's namespace belongs to (for rpc-name rules).
OPERATION_MODULES = {
    BASE_NS: "ietf-netconf",
    NOTIFICATION_NS: "notifications",
    MONITORING_NS: "ietf-netconf-monitoring",
    SN_NS: SN_MODULE,
    YP_NS: YP_MODULE,
}


def _user(session: SessionHandle) -> str:
    return session.info.username


def _rules(agent: AgentState) -> Nacm | None:
    return agent.access.rules() if agent.access is not None else None


def check_exec(session: SessionHandle, operation: etree._Element) -> None:
    """access-denied (protocol) unless the session's user may run `operation`."""
    agent = session.agent
    rules = _rules(agent)
    if rules is None or agent.access is None:
        return
    module, name = _operation_name(operation.tag)
    if not rules.may_exec(_user(session), module, name):
        agent.access.denied_operations += 1
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.ACCESS_DENIED,
            f"user {_user(session)!r} may not run <{name}>",
        )


@functools.lru_cache(maxsize=256)  # the tags of the operations served: a handful
def _operation_name(tag: str) -> tuple[str, str]:
    """(module, operation name) of an operation element's tag."""
    qname = etree.QName(tag)
    namespace = qname.namespace or ""
    return OPERATION_MODULES.get(namespace, namespace), qname.localname


def reads_everything(session: SessionHandle) -> bool:
    rules = _rules(session.agent)
    return rules is None or rules.reads_everything(_user(session))


def prune_reply(session: SessionHandle, wrapper: etree._Element) -> etree._Element:
    """`wrapper` (changed in place) without what the session's user may not read."""
    agent = session.agent
    rules = _rules(agent)
    if rules is not None and not rules.reads_everything(_user(session)):
        prune(wrapper, rules, _user(session), agent.namespace_modules, agent.keys_of_names)
    return wrapper


def check_edit(
    session: SessionHandle,
    target: etree._Element,
    config: etree._Element,
    default_operation: str,
) -> None:
    """access-denied (application) at the first node the edit may not change."""
    agent = session.agent
    if agent.access is None:
        return
    if permits_whole_edit(session, config):
        return
    changes = edit_changes(
        target, config, default_operation, agent.namespace_modules, agent.keys_of_names
    )
    _check_changes(session, changes)


def permits_whole_edit(session: SessionHandle, config: etree._Element) -> bool:
    """Whether the user may create, change and delete anything under every top-level node
    the edit names (the controller's account on the node tree): no walk of the edit then."""
    rules = _rules(session.agent)
    if rules is None:
        return True
    user = _user(session)
    agent = session.agent
    tops = [child for child in config if isinstance(child.tag, str)]
    for top in tops:
        path = (child_step((), top, agent.namespace_modules, agent.keys_of_names),)
        if not all(rules.permits_subtree(user, path, access) for access in WRITES):
            return False
    return True


def check_replace(session: SessionHandle, target: etree._Element, source: etree._Element) -> None:
    """As `check_edit`, for a copy-config that replaces `target` by `source`."""
    agent = session.agent
    if agent.access is None:
        return
    changes = replace_changes(target, source, agent.namespace_modules, agent.keys_of_names)
    _check_changes(session, changes)


def _check_changes(session: SessionHandle, changes: list[Change]) -> None:
    agent = session.agent
    rules = _rules(agent)
    if rules is None or agent.access is None:
        return
    user = _user(session)
    for change in changes:
        if not rules.may_access(user, change.path, change.access):
            agent.access.denied_data_writes += 1
            located = error_path(_libyang_path(change.path), agent.module_namespaces, "")
            raise NetconfError.of(
                ErrorType.APPLICATION,
                ErrorTag.ACCESS_DENIED,
                f"user {user!r} may not {change.access.value} "
                f"{'/'.join(step.name for step in change.path)}",
                path=located.xpath if located is not None else None,
                path_namespaces=located.namespaces if located is not None else (),
            )


def may_receive(session: SessionHandle, event: etree._Element) -> bool:
    """Whether the session's user may get the notification `event` (RFC 8341 §3.4.6)."""
    agent = session.agent
    rules = _rules(agent)
    if rules is None or agent.access is None:
        return True
    qname = etree.QName(event)
    module = agent.namespace_modules.get(qname.namespace or "", "")
    if rules.may_receive(_user(session), module, qname.localname):
        return True
    agent.access.denied_notifications += 1
    return False


def _libyang_path(path: Path) -> str:
    parts = []
    for step in path:
        keys = "".join(f"[{name}='{value}']" for name, value in step.keys)
        parts.append(f"{step.module}:{step.name}{keys}")
    return "/" + "/".join(parts)
