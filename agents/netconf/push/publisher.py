"""Runs one agent's dynamic subscriptions: timers, snapshots of the operational datastore
as each subscriber may read them, and delivery to the sessions.

The decisions are pure (`table`, `changes`, `messages`); this module holds the timers and
the last view of each on-change subscription. Everything runs on the agent's event loop.
A receiver that does not read is never waited for: its subscriptions are suspended while
its unsent output is above `Limits.max_backlog_bytes` (see `model.Limits`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from lxml import etree

from agents.netconf import authz
from agents.netconf.confirmed import Cancellable, Scheduler
from agents.netconf.errors import ErrorTag, ErrorType, NetconfError, base_element
from agents.netconf.push import messages
from agents.netconf.push.changes import changes, without
from agents.netconf.push.model import (
    DATASTORE_NOT_SUBSCRIBABLE,
    NO_SUCH_SUBSCRIPTION,
    NO_SUCH_SUBSCRIPTION_RESYNC,
    STREAM_UNAVAILABLE,
    DatastoreTarget,
    ErrorInfo,
    Identity,
    Limits,
    OnChange,
    Periodic,
    PushSubscription,
    State,
    StreamTarget,
    SubscriptionError,
    Target,
)
from agents.netconf.push.table import SubscriptionTable, next_periodic, on_change_interval_s
from agents.netconf.subscription import Subscription
from agents.netconf.subtree import filter_subtree
from agents.netconf.xpath import select_xpath

if TYPE_CHECKING:
    from agents.netconf.state import AgentState, SessionHandle

log = logging.getLogger(__name__)

UNSUPPORTABLE_VOLUME = Identity("ietf-subscribed-notifications", "unsupportable-volume")


class Publisher:
    """The dynamic subscriptions of one agent (`AgentState.push`)."""

    def __init__(
        self, agent: AgentState, scheduler: Scheduler, limits: Limits | None = None
    ) -> None:
        self._agent = agent
        self._scheduler = scheduler
        self.table = SubscriptionTable(limits or Limits())
        self._timers: dict[int, Cancellable] = {}
        self._started: dict[int, datetime] = {}
        self._last: dict[int, list[etree._Element]] = {}  # on-change: the view last pushed
        # on-change: the datastore tree that view came from; the datastore keeps the same
        # tree object while neither running nor the state changed, so nothing to compare.
        self._source: dict[int, etree._Element] = {}
        self._patches: dict[int, int] = {}
        self.updates_sent = 0  # push-update and push-change-update notifications
        self.suspensions = 0

    @property
    def limits(self) -> Limits:
        return self.table.limits

    # ---- the RPCs ------------------------------------------------------------------------

    def establish(self, session: SessionHandle, target: Target) -> PushSubscription:
        if session.subscription is not None:
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.OPERATION_NOT_SUPPORTED,
                "this session has an RFC 5277 subscription: a session holds either that or "
                "RFC 8639 subscriptions (RFC 8640 §3)",
            )
        subscription = self.table.establish(session.session_id, session.info.username, target)
        self._started[subscription.id] = self._agent.clock()
        self._schedule_first(subscription)
        return subscription

    def modify(self, session: SessionHandle, subscription_id: int, target: Target) -> None:
        subscription = self.table.modify(session.session_id, subscription_id, target)
        self._cancel(subscription_id)
        self._last.pop(subscription_id, None)
        self._started[subscription_id] = self._agent.clock()
        self._schedule_first(subscription, modified=True)

    def delete(self, session: SessionHandle, subscription_id: int) -> None:
        self.table.owned(session.session_id, subscription_id, ErrorInfo.DELETE)
        self._forget(subscription_id)

    def kill(self, subscription_id: int) -> None:
        """Ends any session's subscription; its receiver gets subscription-terminated."""
        subscription = self.table.get(subscription_id)
        if subscription is None:
            raise SubscriptionError(
                NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id}", ErrorInfo.DELETE
            )
        self._forget(subscription_id)
        self._send_state(
            subscription, messages.subscription_terminated(subscription_id, NO_SUCH_SUBSCRIPTION)
        )

    def resync(self, session: SessionHandle, subscription_id: int) -> None:
        """A push-update with the whole selection of an on-change subscription, at once."""
        subscription = self.table.get(subscription_id)
        target = subscription.target if subscription is not None else None
        if (
            subscription is None
            or subscription.session_id != session.session_id
            or not isinstance(target, DatastoreTarget)
            or not isinstance(target.trigger, OnChange)
        ):
            raise SubscriptionError(
                NO_SUCH_SUBSCRIPTION_RESYNC,
                f"this session has no on-change subscription {subscription_id}",
                ErrorInfo.RESYNC,
            )
        self._last.pop(subscription_id, None)
        self._cancel(subscription_id)
        self._later(subscription_id, 0.0, lambda: self._on_change(subscription_id, sync=True))

    # ---- lifecycle -----------------------------------------------------------------------

    def has_subscriptions(self, session_id: int) -> bool:
        return bool(self.table.of_session(session_id))

    def session_ended(self, session_id: int) -> None:
        """A dynamic subscription lives as long as its session (RFC 8639 §2.4.1)."""
        for subscription in self.table.of_session(session_id):
            self._forget(subscription.id)

    def stop(self) -> None:
        """The agent stops: every receiver gets subscription-terminated first."""
        for subscription in self.table.all():
            self._forget(subscription.id)
            reason = (
                DATASTORE_NOT_SUBSCRIBABLE
                if isinstance(subscription.target, DatastoreTarget)
                else STREAM_UNAVAILABLE
            )
            self._send_state(
                subscription, messages.subscription_terminated(subscription.id, reason)
            )

    def stream_events(self, session: SessionHandle, event: etree._Element) -> list[etree._Element]:
        """What of `event` each active stream subscription of `session` gets (one entry per
        subscription whose filter matches; NACM was checked by the caller)."""
        found = []
        for subscription in self.table.of_session(session.session_id):
            target = subscription.target
            if not isinstance(target, StreamTarget) or not self._writable(subscription, session):
                continue
            selection = target.selection
            rfc5277 = Subscription(selection.subtree, selection.xpath)
            content = rfc5277.content_of(event, self._agent.datastore.schema)
            if content is not None:
                found.append(content)
        return found

    # ---- timers --------------------------------------------------------------------------

    def _schedule_first(self, subscription: PushSubscription, modified: bool = False) -> None:
        target = subscription.target
        if not isinstance(target, DatastoreTarget):
            return
        if isinstance(target.trigger, Periodic):
            self._schedule_periodic(subscription.id, target.trigger)
            return
        sync = target.trigger.sync_on_start or modified
        self._later(subscription.id, 0.0, lambda: self._on_change(subscription.id, sync=sync))

    def _schedule_periodic(self, subscription_id: int, trigger: Periodic) -> None:
        now = self._agent.clock()
        due = next_periodic(now, trigger, self._started[subscription_id])
        delay = max((due - now).total_seconds(), 0.0)
        self._later(subscription_id, delay, lambda: self._periodic(subscription_id))

    def _later(self, subscription_id: int, delay_s: float, callback: Callable[[], None]) -> None:
        self._timers[subscription_id] = self._scheduler.call_later(delay_s, callback)

    def _cancel(self, subscription_id: int) -> None:
        timer = self._timers.pop(subscription_id, None)
        if timer is not None:
            timer.cancel()

    def _forget(self, subscription_id: int) -> None:
        self._cancel(subscription_id)
        self._last.pop(subscription_id, None)
        self._source.pop(subscription_id, None)
        self._started.pop(subscription_id, None)
        self._patches.pop(subscription_id, None)
        if self.table.get(subscription_id) is not None:
            self.table.remove(subscription_id)

    # ---- updates -------------------------------------------------------------------------

    def _periodic(self, subscription_id: int) -> None:
        found = self._live(subscription_id)
        if found is None:
            return
        subscription, session, target = found
        assert isinstance(target.trigger, Periodic)
        try:
            if self._writable(subscription, session):
                view = self._view(subscription, session, target)
                self._send_update(session, messages.push_update(subscription_id, view))
        except Exception:  # one failed update must not end the subscription
            log.exception("subscription %d: periodic update failed", subscription_id)
        self._schedule_periodic(subscription_id, target.trigger)

    def _on_change(self, subscription_id: int, sync: bool = False) -> None:
        found = self._live(subscription_id)
        if found is None:
            return
        subscription, session, target = found
        trigger = target.trigger
        assert isinstance(trigger, OnChange)
        # After a suspension what changed meanwhile is lost: a full push-update resyncs.
        resumed = subscription.state is State.SUSPENDED
        try:
            if self._writable(subscription, session):
                sync = sync or resumed
                self._compare(subscription_id, session, subscription, target, trigger, sync)
        except Exception:
            log.exception("subscription %d: on-change update failed", subscription_id)
        interval = on_change_interval_s(trigger, self.limits)
        self._later(subscription_id, interval, lambda: self._on_change(subscription_id))

    def _compare(
        self,
        subscription_id: int,
        session: SessionHandle,
        subscription: PushSubscription,
        target: DatastoreTarget,
        trigger: OnChange,
        sync: bool,
    ) -> None:
        source = self._agent.datastore.operational_view()
        last = self._last.get(subscription_id)
        if last is not None and self._source.get(subscription_id) is source:
            return
        view = self._view(subscription, session, target, source)
        self._last[subscription_id] = view
        self._source[subscription_id] = source
        if last is None:
            if sync:
                self._send_update(session, messages.push_update(subscription_id, view))
            return
        agent = self._agent
        edits = changes(last, view, agent.datastore.keys_of, agent.namespace_modules)
        edits = without(edits, trigger.excluded)
        if not edits:
            return
        number = self._patches.get(subscription_id, 0)
        self._patches[subscription_id] = number + 1
        update = messages.push_change_update(subscription_id, str(number), edits)
        self._send_update(session, update)

    def _live(
        self, subscription_id: int
    ) -> tuple[PushSubscription, SessionHandle, DatastoreTarget] | None:
        self._timers.pop(subscription_id, None)
        subscription = self.table.get(subscription_id)
        if subscription is None or not isinstance(subscription.target, DatastoreTarget):
            return None
        session = self._agent.sessions.get(subscription.session_id)
        if session is None:  # the session is gone: so is the subscription
            self._forget(subscription_id)
            return None
        return subscription, session, subscription.target

    def _view(
        self,
        subscription: PushSubscription,
        session: SessionHandle,
        target: DatastoreTarget,
        source: etree._Element | None = None,
    ) -> list[etree._Element]:
        """The selected operational data that the subscriber may read (copies)."""
        datastore = self._agent.datastore
        # Shared with other readers: never modified here.
        wrapper = source if source is not None else datastore.operational_view()
        selection = target.selection
        if selection.xpath is not None:
            nsmap = dict(selection.xpath.nsmap)
            data = select_xpath(datastore.schema, wrapper, selection.xpath.expression, nsmap)
        elif selection.subtree is not None:
            roots = [child for child in wrapper if isinstance(child.tag, str)]
            data = base_element("data")
            data.extend(filter_subtree(roots, selection.subtree, datastore.keys_of))
        else:
            data = copy.deepcopy(wrapper)
        authz.prune_reply(session, data)
        return [child for child in data if isinstance(child.tag, str)]

    def _writable(self, subscription: PushSubscription, session: SessionHandle) -> bool:
        """Whether to send now: suspends a subscription whose receiver lags, resumes it
        once the receiver caught up (RFC 8639 §2.4.5, reason unsupportable-volume)."""
        backlog = session.pending_bytes()
        limits = self.limits
        if subscription.state is State.ACTIVE:
            if backlog <= limits.max_backlog_bytes:
                return True
            self.table.set_state(subscription.id, State.SUSPENDED)
            self.suspensions += 1
            log.info("subscription %d suspended: %d bytes unsent", subscription.id, backlog)
            self._send_state(
                subscription,
                messages.subscription_suspended(subscription.id, UNSUPPORTABLE_VOLUME),
            )
            return False
        if backlog > limits.resume_backlog_bytes:
            return False
        self.table.set_state(subscription.id, State.ACTIVE)
        self._last.pop(subscription.id, None)
        self._send_state(subscription, messages.subscription_resumed(subscription.id))
        return True

    def _send_update(self, session: SessionHandle, inner: bytes) -> None:
        self.updates_sent += 1
        session.send_notification(messages.notification(self._agent.clock(), inner))

    def _send_state(self, subscription: PushSubscription, inner: bytes) -> None:
        session = self._agent.sessions.get(subscription.session_id)
        if session is not None:
            session.send_notification(messages.notification(self._agent.clock(), inner))
