"""RFC 6022 NETCONF monitoring: the counters the sessions keep and the /netconf-state tree.

The tree is built from the agent's state (`MonitoredAgent`, which `state.AgentState` is)
when a <get> reads it; it lives beside the YANG
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
from typing import Protocol
from xml.sax.saxutils import escape

from lxml import etree

from agents.datastore import DatastoreName

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


# Counter names in the order of the YANG module: rendering reads names, not enum members.
_COUNTER_NAMES = tuple(counter.value for counter in Counter)
_SERVER_COUNTER_NAMES = tuple(counter.value for counter in ServerCounter)


class Counters:
    """Mutable counts by name; a session's and the server's are bumped together."""

    def __init__(self) -> None:
        self._values = dict.fromkeys((*_COUNTER_NAMES, *_SERVER_COUNTER_NAMES), 0)

    def bump(self, counter: Counter | ServerCounter) -> None:
        self._values[counter.value] = (self._values[counter.value] + 1) % _COUNTER32

    def __getitem__(self, counter: Counter | ServerCounter) -> int:
        return self._values[counter.value]

    def render(self, names: tuple[str, ...]) -> str:
        """The counters `names` as XML leaves."""
        values = self._values
        return "".join(f"<{name}>{values[name]}</{name}>" for name in names)


@dataclass(frozen=True)
class SessionInfo:
    """What the monitoring tree shows of one session besides its counters."""

    session_id: int
    username: str
    source_host: str | None
    login_time: datetime


@dataclass(frozen=True)
class FixedParts:
    """The parts of /netconf-state that never change for an agent, serialized once."""

    capabilities: str
    schemas: str


class MonitoredSession(Protocol):
    """What the monitoring tree reads of one session."""

    @property
    def session_id(self) -> int: ...
    @property
    def info(self) -> SessionInfo: ...
    @property
    def counters(self) -> Counters: ...


class MonitoredAgent(Protocol):
    """What the monitoring tree reads of the agent: locks, sessions, counters."""

    @property
    def monitoring_fixed(self) -> FixedParts: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def counters(self) -> Counters: ...
    @property
    def sessions(self) -> Mapping[int, MonitoredSession]: ...
    def lock_holder(self, name: DatastoreName) -> int | None: ...
    def lock_time(self, name: DatastoreName) -> datetime: ...


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


def netconf_state(agent: MonitoredAgent) -> etree._Element:
    """The /netconf-state tree as it is now."""
    return etree.fromstring(netconf_state_xml(agent))


def netconf_state_xml(agent: MonitoredAgent) -> bytes:
    """`netconf_state` serialized, written as text: every unfiltered <get> carries it, and
    building it with lxml cost more than the rest of such a <get>."""
    parts = [_OPEN, agent.monitoring_fixed.capabilities, "<datastores>"]
    for name in (DatastoreName.RUNNING, DatastoreName.CANDIDATE):
        parts.append(f"<datastore><name>{name.value}</name>")
        holder = agent.lock_holder(name)
        if holder is not None:
            parts.append(
                f"<locks><global-lock>{_number('locked-by-session', holder)}"
                f"{_leaf('locked-time', date_and_time(agent.lock_time(name)))}"
                "</global-lock></locks>"
            )
        parts.append("</datastore>")
    parts.append("</datastores>")
    parts.append(agent.monitoring_fixed.schemas)
    parts.append("<sessions>")
    for session in sorted(agent.sessions.values(), key=lambda s: s.session_id):
        parts.append(_session(session.info, session.counters))
    parts.append("</sessions><statistics>")
    parts.append(_leaf("netconf-start-time", date_and_time(agent.started_at)))
    parts.append(agent.counters.render(_SERVER_COUNTER_NAMES))
    parts.append(agent.counters.render(_COUNTER_NAMES))
    parts.append("</statistics></netconf-state>")
    return "".join(parts).encode("utf-8")


def fixed_parts(
    capabilities: Iterable[str], module_texts: Mapping[tuple[str, str], str]
) -> FixedParts:
    capabilities = tuple(capabilities)
    listed = "".join(_leaf("capability", capability) for capability in capabilities)
    namespaces = _namespaces(capabilities)
    schemas = "".join(
        "<schema>"
        f"{_leaf('identifier', identifier)}{_leaf('version', version)}"
        "<format>ncm:yang</format>"
        f"{_leaf('namespace', namespaces.get(identifier, ''))}"
        "<location>NETCONF</location></schema>"
        for identifier, version in sorted(module_texts)
    )
    return FixedParts(f"<capabilities>{listed}</capabilities>", f"<schemas>{schemas}</schemas>")


# identityref values say "ncm:...": the root declares the prefix.
_OPEN = f'<netconf-state xmlns="{MONITORING_NS}" xmlns:ncm="{MONITORING_NS}">'


def _session(info: SessionInfo, counters: Counters) -> str:
    source = _leaf("source-host", info.source_host) if info.source_host else ""
    return (
        f"<session>{_number('session-id', info.session_id)}"
        "<transport>ncm:netconf-ssh</transport>"
        f"{_leaf('username', info.username)}{source}"
        f"{_leaf('login-time', date_and_time(info.login_time))}"
        f"{counters.render(_COUNTER_NAMES)}</session>"
    )


def _leaf(name: str, text: str) -> str:
    return f"<{name}>{escape(text)}</{name}>"


def _number(name: str, value: int) -> str:
    return f"<{name}>{value}</{name}>"


def _namespaces(capabilities: Iterable[str]) -> dict[str, str]:
    """Module name → namespace, from the module capabilities `ns?module=name&...`."""
    found: dict[str, str] = {}
    for capability in capabilities:
        namespace, _, query = capability.partition("?module=")
        if query:
            found[query.partition("&")[0]] = namespace
    return found
