"""RFC 6022 NETCONF monitoring: the counters the sessions keep and the /netconf-state tree.

The tree is built from `AgentState` when a <get> reads it; it lives beside the YANG
validated node tree of the datastore (it is server state, not node configuration). Its
model is our own ietf-netconf-monitoring.yang, next to this file: XPath filters and tests
evaluate it with libyang.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lxml import etree

from agents.datastore import DatastoreName

if TYPE_CHECKING:
    from agents.netconf.state import AgentState

MONITORING_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
MONITORING_MODULE = "ietf-netconf-monitoring"
MONITORING_REVISION = "2010-10-04"
MODULE_PATH = Path(__file__).resolve().parent / f"{MONITORING_MODULE}.yang"

# List keys of the netconf-state lists, for subtree filters (always returned with an entry).
_KEYS = {
    "datastore": ("name",),
    "schema": ("identifier", "version", "format"),
    "session": ("session-id",),
}
_COUNTER32 = 2**32  # zero-based-counter32 wraps


class Counter(enum.Enum):
    """The counters RFC 6022 keeps per session and for the whole server."""

    IN_RPCS = "in-rpcs"
    IN_BAD_RPCS = "in-bad-rpcs"
    OUT_RPC_ERRORS = "out-rpc-errors"
    OUT_NOTIFICATIONS = "out-notifications"


class ServerCounter(enum.Enum):
    """The counters RFC 6022 keeps only for the whole server."""

    IN_BAD_HELLOS = "in-bad-hellos"
    IN_SESSIONS = "in-sessions"
    DROPPED_SESSIONS = "dropped-sessions"


class Counters:
    """Mutable counts by name; a session's and the server's are bumped together."""

    def __init__(self) -> None:
        self._values: dict[Counter | ServerCounter, int] = {}

    def bump(self, counter: Counter | ServerCounter) -> None:
        self._values[counter] = (self._values.get(counter, 0) + 1) % _COUNTER32

    def __getitem__(self, counter: Counter | ServerCounter) -> int:
        return self._values.get(counter, 0)


@dataclass(frozen=True)
class SessionInfo:
    """What the monitoring tree shows of one session besides its counters."""

    session_id: int
    username: str
    source_host: str | None
    login_time: datetime


def module_text() -> str:
    return MODULE_PATH.read_text(encoding="utf-8")


def keys_of(element: etree._Element) -> tuple[str, ...]:
    """List keys of a netconf-state element (empty for other elements)."""
    if etree.QName(element).namespace != MONITORING_NS:
        return ()
    return _KEYS.get(etree.QName(element).localname, ())


def may_select_monitoring(filter_nodes: Iterable[etree._Element]) -> bool:
    """Whether a subtree filter can select anything of /netconf-state (else: skip building it)."""
    for node in filter_nodes:
        if not isinstance(node.tag, str):
            continue
        qname = etree.QName(node)
        if qname.localname == "netconf-state" and qname.namespace in (None, MONITORING_NS):
            return True
    return False


def date_and_time(moment: datetime) -> str:
    """yang:date-and-time in UTC with microseconds."""
    text = moment.isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def netconf_state(agent: AgentState) -> etree._Element:
    """The /netconf-state tree as it is now."""
    # identityref values say "ncm:..."; declared on the root, as lxml drops a declaration
    # on the leaf itself once the tree joins a parent that has the same default namespace.
    nsmap = cast("dict[str, str]", {None: MONITORING_NS, "ncm": MONITORING_NS})
    root = etree.Element(f"{{{MONITORING_NS}}}netconf-state", nsmap=nsmap)
    capabilities = _child(root, "capabilities")
    for capability in agent.capabilities:
        _child(capabilities, "capability", capability)
    _datastores(_child(root, "datastores"), agent)
    _schemas(_child(root, "schemas"), agent.module_texts, _namespaces(agent.capabilities))
    sessions = _child(root, "sessions")
    for session in sorted(agent.sessions.values(), key=lambda s: s.session_id):
        _session(sessions, session.info, session.counters)
    statistics = _child(root, "statistics")
    _child(statistics, "netconf-start-time", date_and_time(agent.started_at))
    for server_counter in ServerCounter:
        _child(statistics, server_counter.value, str(agent.counters[server_counter]))
    _counters(statistics, agent.counters)
    return root


def _datastores(parent: etree._Element, agent: AgentState) -> None:
    for name in (DatastoreName.RUNNING, DatastoreName.CANDIDATE):
        datastore = _child(parent, "datastore")
        _child(datastore, "name", name.value)
        holder = agent.lock_holder(name)
        if holder is None:
            continue
        lock = _child(_child(datastore, "locks"), "global-lock")
        _child(lock, "locked-by-session", str(holder))
        _child(lock, "locked-time", date_and_time(agent.lock_time(name)))


def _schemas(
    parent: etree._Element,
    module_texts: Mapping[tuple[str, str], str],
    namespaces: Mapping[str, str],
) -> None:
    for identifier, version in sorted(module_texts):
        schema = _child(parent, "schema")
        _child(schema, "identifier", identifier)
        _child(schema, "version", version)
        _prefixed(schema, "format", "yang")
        _child(schema, "namespace", namespaces.get(identifier, ""))
        _child(schema, "location", "NETCONF")


def _session(parent: etree._Element, info: SessionInfo, counters: Counters) -> None:
    session = _child(parent, "session")
    _child(session, "session-id", str(info.session_id))
    _prefixed(session, "transport", "netconf-ssh")
    _child(session, "username", info.username)
    if info.source_host:
        _child(session, "source-host", info.source_host)
    _child(session, "login-time", date_and_time(info.login_time))
    _counters(session, counters)


def _counters(parent: etree._Element, counters: Counters) -> None:
    for counter in Counter:
        _child(parent, counter.value, str(counters[counter]))


def _namespaces(capabilities: Iterable[str]) -> dict[str, str]:
    """Module name → namespace, from the module capabilities `ns?module=name&...`."""
    found: dict[str, str] = {}
    for capability in capabilities:
        namespace, _, query = capability.partition("?module=")
        if query:
            found[query.partition("&")[0]] = namespace
    return found


def _child(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{MONITORING_NS}}}{local}")
    element.text = text
    return element


def _prefixed(parent: etree._Element, local: str, identity: str) -> None:
    """An identityref leaf: `ncm:identity`, with ncm declared on the leaf itself."""
    element = etree.SubElement(parent, f"{{{MONITORING_NS}}}{local}", nsmap={"ncm": MONITORING_NS})
    element.text = f"ncm:{identity}"
