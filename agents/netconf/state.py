"""State shared by the sessions of one agent: datastore, locks, sessions, capabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from agents.datastore import Datastore, DatastoreName
from agents.netconf.framing import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from agents.netconf.session import Session


@dataclass(frozen=True)
class Subscription:
    """An RFC 5277 subscription: the NETCONF stream, optionally filtered."""

    filter_nodes: tuple[etree._Element, ...] | None  # None: every notification


class AgentState:
    """What every session of one agent shares: datastore, locks, sessions, capabilities."""

    def __init__(
        self,
        datastore: Datastore,
        capabilities: Sequence[str],
        module_texts: dict[tuple[str, str], str],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.datastore = datastore
        self.capabilities = tuple(capabilities)
        self.module_texts = module_texts  # (name, revision) → YANG text, for get-schema
        self.max_message_size = max_message_size
        self.locks: dict[DatastoreName, int] = {}
        self.sessions: dict[int, Session] = {}
        self._next_session_id = 1

    def new_session_id(self) -> int:
        session_id = self._next_session_id
        self._next_session_id += 1
        return session_id

    def lock_holder(self, name: DatastoreName) -> int | None:
        return self.locks.get(name)

    def release_locks(self, session_id: int) -> None:
        """A session ended: its locks die with it; an uncommitted candidate it locked goes."""
        for name, holder in list(self.locks.items()):
            if holder == session_id:
                del self.locks[name]
                if name is DatastoreName.CANDIDATE:
                    self.datastore.discard_changes()
