"""State shared by the sessions of one agent: datastore, locks, sessions, capabilities.

Sessions are seen through `SessionHandle`, so this module needs nothing of `session`."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from agents.access.control import AccessControl
from agents.datastore import Datastore, DatastoreName
from agents.netconf.confirmed import ConfirmedCommit, RolledBack, Scheduler
from agents.netconf.framing import DEFAULT_MAX_MESSAGE_SIZE
from agents.netconf.monitoring import (
    MONITORING_MODULE,
    MONITORING_REVISION,
    Counters,
    SessionInfo,
    fixed_parts,
    module_text,
)
from agents.netconf.subscription import Subscription
from common.audit import AuditLog
from yang.schema import NODE_MODULE

Clock = Callable[[], datetime]


def module_namespaces(capabilities: Sequence[str]) -> dict[str, str]:
    """Module name → namespace of every `ns?module=name&...` capability."""
    found: dict[str, str] = {}
    for uri in capabilities:
        namespace, _, query = uri.partition("?module=")
        if query:
            found[query.partition("&")[0]] = namespace
    return found


def utc_now() -> datetime:
    return datetime.now(UTC)


class CloseReason(enum.Enum):
    """Why a session ends; RFC 6022 counts all but the orderly ones as dropped."""

    CLOSE_SESSION = "close-session"
    KILLED = "kill-session"
    BAD_HELLO = "bad-hello"
    DROPPED = "dropped"


class SessionHandle(Protocol):
    """What the agent and the operations see of one session (`session.Session` is one)."""

    session_id: int
    agent: AgentState
    info: SessionInfo
    counters: Counters  # this session's RFC 6022 counters
    subscription: Subscription | None

    def send_notification(self, notification: bytes) -> None:
        """Send a serialized <notification> if the session is established."""

    def close(self, reason: CloseReason = CloseReason.DROPPED) -> None:
        """End the session: release its locks, forget it, close its transport."""

    def pending_bytes(self) -> int:
        """Output written but not yet sent to the client (0 when unknown)."""


class PushService(Protocol):
    """What the agent and RFC 5277 see of the dynamic subscriptions (`push.Publisher`)."""

    def has_subscriptions(self, session_id: int) -> bool:
        """Whether the session holds RFC 8639 subscriptions."""

    def session_ended(self, session_id: int) -> None:
        """The session's subscriptions end with it."""


class AgentState:
    """What every session of one agent shares: datastore, locks, sessions, capabilities,
    the RFC 6022 counters and a pending confirmed commit."""

    def __init__(
        self,
        datastore: Datastore,
        capabilities: Sequence[str],
        module_texts: dict[tuple[str, str], str],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        clock: Clock = utc_now,
        scheduler: Scheduler | None = None,
        access: AccessControl | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        """`scheduler` runs confirmed-commit timeouts; without one they never expire (a
        session end or <cancel-commit> still rolls back). `access`: NACM and the accounts
        (None: every authenticated user may do everything); `audit`: where changes are
        recorded (None: nowhere)."""
        self.datastore = datastore
        self.access = access
        self.audit = audit
        self.capabilities = tuple(capabilities)
        # (name, revision) → YANG text, for get-schema; our monitoring module is one of them.
        self.module_texts = {
            **module_texts,
            (MONITORING_MODULE, MONITORING_REVISION): module_text(),
        }
        self.monitoring_fixed = fixed_parts(self.capabilities, self.module_texts)
        # Module name → namespace, from the module capabilities (error-path prefixes).
        self.module_namespaces = module_namespaces(self.capabilities)
        self.default_module = NODE_MODULE
        self.namespace_modules = {ns: name for name, ns in self.module_namespaces.items()}
        self.max_message_size = max_message_size
        self.clock = clock
        self.started_at = clock()
        self.counters = Counters()  # the whole agent's RFC 6022 statistics
        self.locks: dict[DatastoreName, int] = {}
        self._lock_times: dict[DatastoreName, datetime] = {}
        self.sessions: dict[int, SessionHandle] = {}
        self.confirmed = ConfirmedCommit(datastore, scheduler, self._audit_rollback)
        self.confirmed.restarted()
        # RFC 8639/8641 dynamic subscriptions; the server sets it (None: not offered).
        self.push: PushService | None = None
        self._next_session_id = 1

    def _audit_rollback(self, event: RolledBack) -> None:
        """A confirmed commit undone, in the audit log under the user who made it."""
        if self.audit is None:
            return
        role = "-"
        if self.access is not None:
            role = ",".join(sorted(self.access.rules().groups_of(event.user))) or "-"
        outcome = "ok" if event.ok else "failed"
        self.audit.record(
            event.user, role, "confirmed-commit-rollback", "running", outcome, event.detail
        )

    def keys_of_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The key names of the list at `names` (element names from the top); () if none."""
        info = self.datastore.schema.node_info(names)
        return info.keys if info is not None else ()

    def new_session_id(self) -> int:
        session_id = self._next_session_id
        self._next_session_id += 1
        return session_id

    def lock_holder(self, name: DatastoreName) -> int | None:
        return self.locks.get(name)

    def lock_time(self, name: DatastoreName) -> datetime:
        return self._lock_times.get(name, self.started_at)

    def lock(self, name: DatastoreName, session_id: int) -> None:
        self.locks[name] = session_id
        self._lock_times[name] = self.clock()

    def unlock(self, name: DatastoreName) -> None:
        self.locks.pop(name, None)
        self._lock_times.pop(name, None)

    def release_locks(self, session_id: int) -> None:
        """A session ended: its locks die with it; an uncommitted candidate it locked goes."""
        for name, holder in list(self.locks.items()):
            if holder == session_id:
                self.unlock(name)
                if name is DatastoreName.CANDIDATE:
                    self.datastore.discard_changes()

    def session_ended(self, session_id: int) -> None:
        """Locks die with the session, and so does its non-persistent confirmed commit."""
        self.release_locks(session_id)
        self.confirmed.session_ended(session_id)
        if self.push is not None:
            self.push.session_ended(session_id)
