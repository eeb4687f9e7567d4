"""Confirmed commit (RFC 6241 §8.4, :confirmed-commit:1.1) without I/O.

A confirmed <commit> makes the candidate running at once and remembers the running
configuration from before; unless a confirming <commit> follows within the timeout, that
configuration comes back. It also comes back on <cancel-commit>, when the session that
issued a confirmed commit without <persist> ends, and when the agent restarts before the
confirmation (the datastore keeps it on disk meanwhile). Every rollback is a whole
replacement of running through the datastore's validate → veto → apply path.

Time is injected: a `Scheduler` runs the expiry (the server's event loop in production, a
hand-driven fake in tests). Each rollback is reported (`RolledBack`: who made the commit,
why it went) to `on_rolled_back`, which the agent records in its audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from agents.datastore import Datastore, DatastoreError, DatastoreName
from agents.netconf.errors import ErrorTag, ErrorType, NetconfError

log = logging.getLogger(__name__)

CONFIRMED_COMMIT_CAPABILITY = "urn:ietf:params:netconf:capability:confirmed-commit:1.1"
DEFAULT_TIMEOUT_S = 600  # RFC 6241 §8.4.5.1


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs `callback` once, `delay_s` seconds from now, unless cancelled."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable: ...


@dataclass(frozen=True)
class CommitRequest:
    """The parameters of one <commit>."""

    confirmed: bool = False
    timeout_s: int = DEFAULT_TIMEOUT_S
    persist: str | None = None
    persist_id: str | None = None


@dataclass(frozen=True)
class RolledBack:
    """A confirmed commit undone (or that failed to be): its maker, why, and the outcome."""

    user: str  # who issued the (last) confirmed commit
    session_id: int  # from which session
    why: str  # "confirm timeout", "session 3 ended", "cancel-commit by alice"
    ok: bool  # running is the configuration from before again
    error: str = ""  # why the rollback failed

    @property
    def detail(self) -> str:
        if self.ok:
            return f"rolled back: {self.why}"
        return f"not rolled back ({self.why}): {self.error}"


RollbackListener = Callable[[RolledBack], None]


@dataclass(frozen=True)
class _Pending:
    owner: int  # the session that issued the (last) confirmed commit
    user: str  # the user of that session
    persist: str | None
    previous: etree._Element  # running before the first confirmed commit of the chain
    token: object  # tells this commit's timer from those of earlier ones
    timer: Cancellable | None


class ConfirmedCommit:
    """The confirmed commit of one agent: at most one is pending."""

    def __init__(
        self,
        datastore: Datastore,
        scheduler: Scheduler | None,
        on_rolled_back: RollbackListener | None = None,
    ) -> None:
        self._datastore = datastore
        self._scheduler = scheduler
        self._on_rolled_back = on_rolled_back
        self._pending: _Pending | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def owner(self) -> int | None:
        return self._pending.owner if self._pending is not None else None

    def commit(self, session_id: int, request: CommitRequest, user: str = "-") -> None:
        """<commit>: plain, confirmed, follow-up confirmed or confirming (`user`: who)."""
        pending = self._pending
        if pending is not None:
            self._check_may_follow(pending, session_id, request.persist_id, "commit")
        elif request.persist_id is not None:
            raise _invalid("persist-id", "no confirmed commit is pending")
        starting = pending is None and request.confirmed
        if pending is not None:
            previous: etree._Element | None = pending.previous
        elif request.confirmed:
            previous = self._datastore.config(DatastoreName.RUNNING)
            # On disk first: an agent restarted before the confirmation starts from it.
            self._datastore.save_rollback(previous)
        else:
            previous = None
        try:
            self._datastore.commit()  # fails without changing anything, pending one included
        except BaseException:
            if starting:
                self._datastore.drop_rollback()
            raise
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        self._pending = None
        if previous is not None and request.confirmed:
            token = object()
            timer = self._schedule(request.timeout_s, token)
            self._pending = _Pending(session_id, user, request.persist, previous, token, timer)
            self._datastore.note_rollback_owner(user, session_id)  # audited after a restart
        elif pending is not None:
            self._datastore.drop_rollback()  # confirmed

    def cancel(self, session_id: int, persist_id: str | None, user: str = "-") -> None:
        """<cancel-commit> by `user`: roll back now; a failed rollback keeps the commit
        pending (and the error goes to the caller)."""
        pending = self._pending
        if pending is None:
            raise NetconfError.of(
                ErrorType.PROTOCOL, ErrorTag.OPERATION_FAILED, "no confirmed commit is pending"
            )
        self._check_may_follow(pending, session_id, persist_id, "cancel-commit")
        self._datastore.copy_config(DatastoreName.RUNNING, pending.previous)
        self._forget(pending)
        self._datastore.drop_rollback()
        self._report(RolledBack(pending.user, pending.owner, f"cancel-commit by {user}", True))

    def restarted(self) -> None:
        """Reports the confirmed commit the datastore undid as the agent started (the agent
        restarted before its confirmation), if any: audited like every other rollback."""
        undone = self._datastore.take_restart_rollback()
        if undone is not None:
            why = "agent restarted before the confirmation"
            self._report(RolledBack(undone.user, undone.session_id, why, undone.ok, undone.error))

    def session_ended(self, session_id: int) -> None:
        pending = self._pending
        if pending is not None and pending.persist is None and pending.owner == session_id:
            self._roll_back(pending, f"session {session_id} ended")

    def expire(self) -> None:
        """The timeout passed without a confirming commit."""
        if self._pending is not None:
            self._roll_back(self._pending, "confirm timeout")

    # ---- internals -------------------------------------------------------------------------

    def _schedule(self, timeout_s: int, token: object) -> Cancellable | None:
        if self._scheduler is None:
            return None

        def fire() -> None:
            # The timer of a commit since confirmed or followed up does nothing.
            if self._pending is not None and self._pending.token is token:
                self.expire()

        return self._scheduler.call_later(float(timeout_s), fire)

    def _check_may_follow(
        self, pending: _Pending, session_id: int, persist_id: str | None, operation: str
    ) -> None:
        """RFC 6241 §8.4.1: without <persist>, only the issuing session may follow up;
        with it, any session that gives the same <persist-id>."""
        if pending.persist is not None:
            if persist_id != pending.persist:
                raise _invalid(
                    "persist-id",
                    f"a persistent confirmed commit is pending: {operation} needs its persist-id",
                )
            return
        if persist_id is not None:
            raise _invalid("persist-id", "the pending confirmed commit has no persist value")
        if session_id != pending.owner:
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.IN_USE,
                f"a confirmed commit of session {pending.owner} is pending",
                info=(("session-id", str(pending.owner)),),
            )

    def _roll_back(self, pending: _Pending, why: str) -> None:
        self._forget(pending)
        try:
            self._datastore.copy_config(DatastoreName.RUNNING, pending.previous)
        except DatastoreError as error:
            # Nobody is waiting for an answer: the unconfirmed configuration stays.
            log.error("confirmed commit not rolled back (%s): %s", why, error)
            self._report(RolledBack(pending.user, pending.owner, why, False, str(error)))
            return
        finally:
            self._datastore.drop_rollback()
        log.info("confirmed commit rolled back: %s", why)
        self._report(RolledBack(pending.user, pending.owner, why, True))

    def _report(self, event: RolledBack) -> None:
        if self._on_rolled_back is None:
            return
        try:
            self._on_rolled_back(event)
        except Exception:  # a listener's failure (a full disk) must not undo the rollback
            log.exception("confirmed commit rollback not reported: %s", event.detail)

    def _forget(self, pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        if self._pending is pending:
            self._pending = None


def _invalid(element: str, message: str) -> NetconfError:
    return NetconfError.of(
        ErrorType.PROTOCOL, ErrorTag.INVALID_VALUE, message, info=(("bad-element", element),)
    )
