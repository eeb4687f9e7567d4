"""The values of a dynamic subscription: what was asked, its limits, and its errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from agents.netconf.errors import ErrorTag
from agents.netconf.subscription import XPathSelect

SN_NS = "urn:ietf:params:xml:ns:yang:ietf-subscribed-notifications"
YP_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-push"
DS_NS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
SN_MODULE = "ietf-subscribed-notifications"
YP_MODULE = "ietf-yang-push"
DS_MODULE = "ietf-datastores"
NETCONF_STREAM = "NETCONF"


class ChangeType(enum.Enum):
    """RFC 8641 change-type: what an on-change subscription may exclude."""

    CREATE = "create"
    DELETE = "delete"
    INSERT = "insert"
    MOVE = "move"
    REPLACE = "replace"


@dataclass(frozen=True)
class Periodic:
    """Push the whole selection every `period_cs` hundredths of a second, at multiples of
    the period from `anchor` (else from when the subscription started)."""

    period_cs: int
    anchor: datetime | None = None


@dataclass(frozen=True)
class OnChange:
    """Push what changed, at most once per `dampening_cs`."""

    dampening_cs: int = 0
    sync_on_start: bool = True
    excluded: frozenset[ChangeType] = frozenset()


Trigger = Periodic | OnChange


@dataclass(frozen=True)
class Selection:
    """A subtree filter's nodes, or an XPath expression, or neither: everything."""

    subtree: tuple[etree._Element, ...] | None = None
    xpath: XPathSelect | None = None


@dataclass(frozen=True)
class DatastoreTarget:
    """YANG-push: the operational datastore, selected and triggered."""

    selection: Selection
    trigger: Trigger


@dataclass(frozen=True)
class StreamTarget:
    """RFC 8639: the events of the NETCONF stream that the selection matches."""

    selection: Selection


Target = DatastoreTarget | StreamTarget


class State(enum.Enum):
    """RFC 8639 receiver state of a dynamic subscription."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class PushSubscription:
    """One dynamic subscription: its id (unique in the agent), who owns it, what it gets."""

    id: int
    session_id: int
    user: str
    target: Target
    state: State = State.ACTIVE


@dataclass(frozen=True)
class Limits:
    """What one agent serves at most, and how it protects itself from slow receivers.

    `poll_s`: how often on-change subscriptions compare snapshots (the least effective
    dampening). A receiver whose unsent output exceeds `max_backlog_bytes` when an update
    is due is suspended (`subscription-suspended`, reason insufficient-resources) and
    resumes (`subscription-resumed`, then a full `push-update` if on-change) once its
    backlog is below `resume_backlog_bytes`.
    """

    per_session: int = 8
    per_agent: int = 64
    min_period_cs: int = 100
    poll_s: float = 0.25
    max_backlog_bytes: int = 1024 * 1024
    resume_backlog_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.per_session < 1 or self.per_agent < self.per_session:
            raise ValueError("limits: need 1 <= per_session <= per_agent")
        if self.min_period_cs < 1 or self.poll_s <= 0:
            raise ValueError("limits: min_period_cs and poll_s must be positive")
        if not 0 < self.resume_backlog_bytes <= self.max_backlog_bytes:
            raise ValueError("limits: need 0 < resume_backlog_bytes <= max_backlog_bytes")


class ErrorInfo(enum.Enum):
    """The RFC 8639/8641 yang-data that carries a failed RPC's reason (and hints)."""

    ESTABLISH_STREAM = (SN_NS, "establish-subscription-stream-error-info")
    ESTABLISH_DATASTORE = (YP_NS, "establish-subscription-datastore-error-info")
    MODIFY_STREAM = (SN_NS, "modify-subscription-stream-error-info")
    MODIFY_DATASTORE = (YP_NS, "modify-subscription-datastore-error-info")
    DELETE = (SN_NS, "delete-subscription-error-info")
    RESYNC = (YP_NS, "resync-subscription-error")


@dataclass(frozen=True)
class Identity:
    """A YANG identity: its module and name."""

    module: str
    name: str

    @property
    def namespace(self) -> str:
        return {SN_MODULE: SN_NS, YP_MODULE: YP_NS}[self.module]

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


# The RFC 8639 and RFC 8641 error identities the agents raise.
NO_SUCH_SUBSCRIPTION = Identity(SN_MODULE, "no-such-subscription")
INSUFFICIENT_RESOURCES = Identity(SN_MODULE, "insufficient-resources")
FILTER_UNSUPPORTED = Identity(SN_MODULE, "filter-unsupported")
ENCODING_UNSUPPORTED = Identity(SN_MODULE, "encoding-unsupported")
STREAM_UNAVAILABLE = Identity(SN_MODULE, "stream-unavailable")
PERIOD_UNSUPPORTED = Identity(YP_MODULE, "period-unsupported")
DATASTORE_NOT_SUBSCRIBABLE = Identity(YP_MODULE, "datastore-not-subscribable")
CANT_EXCLUDE = Identity(YP_MODULE, "cant-exclude")
NO_SUCH_SUBSCRIPTION_RESYNC = Identity(YP_MODULE, "no-such-subscription-resync")

# RFC 8639 §2.4.6 / RFC 8641 §4.4.1: the NETCONF error-tag of each identity.
ERROR_TAGS: dict[Identity, ErrorTag] = {
    NO_SUCH_SUBSCRIPTION: ErrorTag.INVALID_VALUE,
    INSUFFICIENT_RESOURCES: ErrorTag.RESOURCE_DENIED,
    FILTER_UNSUPPORTED: ErrorTag.INVALID_VALUE,
    ENCODING_UNSUPPORTED: ErrorTag.INVALID_VALUE,
    STREAM_UNAVAILABLE: ErrorTag.INVALID_VALUE,
    PERIOD_UNSUPPORTED: ErrorTag.INVALID_VALUE,
    DATASTORE_NOT_SUBSCRIBABLE: ErrorTag.INVALID_VALUE,
    CANT_EXCLUDE: ErrorTag.OPERATION_NOT_SUPPORTED,
    NO_SUCH_SUBSCRIPTION_RESYNC: ErrorTag.INVALID_VALUE,
}


class SubscriptionError(Exception):
    """A subscription RPC that fails: its reason identity, a message naming what is wrong,
    and the hints RFC 8641 lets the publisher give (e.g. the smallest period)."""

    def __init__(
        self,
        reason: Identity,
        message: str,
        info: ErrorInfo = ErrorInfo.ESTABLISH_DATASTORE,
        hints: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.info = info
        self.hints = hints
