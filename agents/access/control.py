"""The access control of one agent: its accounts, the NACM rules in force (running's
/nacm, or the standard rules for the configured users while running has none) and the
counters of what they refused."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from agents.access import nacm
from agents.access.users import Accounts

COUNTER32 = 2**32  # yang:zero-based-counter32 wraps


class RunningSource(Protocol):
    """What access control reads of the datastore (agents.datastore.Datastore is one)."""

    revision: int

    def running_view(self) -> Mapping[str, Any]: ...


class AccessControl:
    """Accounts and the rules; `rules()` follows running (re-read once per revision)."""

    def __init__(self, accounts: Accounts, running: RunningSource) -> None:
        self.accounts = accounts
        self._running = running
        self._standard = nacm.standard(accounts.group_members())
        self._lock = threading.Lock()
        # (revision, running's /nacm as read, the rules made of it): a commit that leaves
        # /nacm as it was (nearly all of them) keeps the rules without reading them again.
        self._cached: tuple[int, object, nacm.Nacm] | None = None
        self.denied_operations = 0
        self.denied_data_writes = 0
        self.denied_notifications = 0

    def state_json(self) -> dict[str, Any]:
        """The RFC 8341 §3.3.4 counters (config false leaves of /nacm) as RFC 7951 JSON;
        the faces increment them at each refused operation, write and notification."""
        return {
            nacm.ROOT: {
                "denied-operations": self.denied_operations % COUNTER32,
                "denied-data-writes": self.denied_data_writes % COUNTER32,
                "denied-notifications": self.denied_notifications % COUNTER32,
            }
        }

    @property
    def standard(self) -> nacm.Nacm:
        """The rules for the configured users (what a fresh running holds)."""
        return self._standard

    def rules(self) -> nacm.Nacm:
        revision = self._running.revision
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == revision:
            return cached[2]
        running = self._running.running_view()
        part = running.get(nacm.ROOT)
        if cached is not None and part == cached[1]:
            found = cached[2]
        else:
            found = nacm.from_json(running) or self._standard
        with self._lock:
            self._cached = (revision, part, found)
        return found
