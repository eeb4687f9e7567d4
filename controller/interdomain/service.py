"""This domain's side of the two-phase protocol: holds segments for callers, installs them on
commit as ordinary intents over NETCONF, releases them, expires the forgotten ones; every
step recorded in the audit log with the calling domain as `who`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from common.audit import AuditLog
from controller.config import DomainConfig
from controller.errors import ControllerError, UnknownIntent
from controller.intents.service import IntentEvent, IntentEventType, IntentService
from controller.interdomain.reservations import (
    LIVE,
    Hold,
    HoldState,
    Refusal,
    ReservationBook,
    ReservationRequest,
    policy_refusal,
    segment_ends,
)
from controller.interdomain.view import DomainView, compute_view
from controller.model import DeviceId, IntentState, KeyRequest, QoS, TopologySnapshot
from yang.model import KeyMode

log = logging.getLogger(__name__)


def who(domain: str) -> str:
    return f"peer:{domain}"


class DomainService:
    def __init__(
        self,
        config: DomainConfig,
        topology: Callable[[], TopologySnapshot],
        intents: IntentService,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._topology = topology
        self._intents = intents
        self._audit = audit or AuditLog("controller", None)
        self._clock = clock
        self.book = ReservationBook(config.reservation_ttl_s)
        self.peer_views: dict[str, DomainView] = {}  # the latest view of each peer domain
        self.peer_seen: dict[str, float] = {}  # peer domain -> when its view last came (unix s)
        self.on_change: list[Callable[[], None]] = []  # called when the view may have changed
        intents.holds = self.book.held
        intents.listeners.add(self._on_intent)

    def _on_intent(self, event: IntentEvent) -> None:
        """A committed segment whose intent failed (no path left in this domain, e.g. its
        border cut off) is broken: its origin learns it from its reservations and re-routes."""
        if event.type is not IntentEventType.FAILED:
            return
        hold = self.book.get(event.intent.intent_id)
        if hold is not None and hold.state is HoldState.COMMITTED:
            self.book.broken(hold.id, "the segment has no path left in this domain")
            self._audit.record(
                who(hold.origin), "peer", "interdomain.broken", hold.id, "failed", hold.reason
            )
            self._changed()

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------ reads

    def view(self) -> DomainView:
        return compute_view(
            self.name,
            self.config.borders,
            self.config.saes,
            self._topology(),
            self._intents.reservations(),
            self.peer_views,
            self._clock(),
            self.config.partners,
        )

    def accept_view(self, caller: str, view: DomainView) -> DomainView | Refusal:
        """A view a peer pushed (`POST /interdomain/view`): only its own domain's."""
        if view.domain != caller:
            return Refusal(403, f"domain {caller} may only send its own view, not {view.domain}'s")
        if self.config.peer(caller) is None:
            return Refusal(403, f"domain {caller} is not a peer of domain {self.name}")
        self.saw_view(caller, view)
        return view

    def saw_view(self, peer: str, view: DomainView) -> None:
        """The latest view of `peer` (fetched or pushed), and when it came."""
        self.peer_views[peer] = view
        self.peer_seen[peer] = self._clock()

    def _changed(self) -> None:
        for listener in list(self.on_change):
            try:
                listener()
            except Exception:
                log.exception("inter-domain change listener")

    def peers_status(self) -> list[dict[str, object]]:
        """Each peer domain as this controller sees it (`GET /interdomain/peers`, operators
        only): whether it is a neighbour and through which borders, how old its view is,
        what it serves and reaches, and what it holds here."""
        self.expire()
        now = self._clock()
        stale_after = 3 * self.config.view_interval_s
        rows: list[dict[str, object]] = []
        for peer in self.config.peers:
            view = self.peer_views.get(peer.name)
            seen = self.peer_seen.get(peer.name)
            age = None if seen is None else max(0.0, round(now - seen, 1))
            if view is None:
                state = "no view"
            elif age is not None and age > stale_after:
                state = "stale"
            else:
                state = "up"
            borders = sorted(
                f"{node}|{self.config.partners[node]}" if node in self.config.partners else node
                for node, domain in self.config.borders.items()
                if domain == peer.name
            )
            live = [h for h in self.book.all() if h.origin == peer.name and h.state in LIVE]
            rows.append(
                {
                    "name": peer.name,
                    "url": peer.url,
                    "state": state,
                    "view_age_s": age,
                    "neighbour": bool(borders),
                    "borders": borders,
                    "saes": list(view.saes) if view is not None else [],
                    # what it leads to beyond itself (our own SAEs through it: a loop)
                    "reach": sorted(
                        sae for sae in (view.reach if view else {}) if sae not in self.config.saes
                    ),
                    "reservations": len(live),
                    "reserved_bps": sum(h.request.rate_bps for h in live),
                    "rate_cap_bps": peer.rate_cap_bps,
                    "key_modes": list(peer.key_modes),
                }
            )
        return rows

    def holds_of(self, caller: str | None) -> list[Hold]:
        """The reservations `caller` (a peer domain) made here; all of them for None."""
        self.expire()
        return [h for h in self.book.all() if caller is None or h.origin == caller]

    # ------------------------------------------------------------ the protocol

    def reserve(self, caller: str, request: ReservationRequest) -> Hold | Refusal:
        """A peer's request (`caller` its domain); policy first, then capacity."""
        self.expire()
        result = self._reserve(caller, request)
        self._record(caller, "interdomain.reserve", request.id, result, _summary(request))
        return result

    def _reserve(self, caller: str, request: ReservationRequest) -> Hold | Refusal:
        if request.origin != caller:
            return Refusal(403, f"origin {request.origin} is not the calling domain {caller}")
        peer = self.config.peer(caller)
        if peer is None:
            return Refusal(403, f"domain {caller} is not a peer of domain {self.name}")
        snapshot = self._topology()
        ends = segment_ends(request, self.config, snapshot)
        if isinstance(ends, Refusal):
            return ends
        if self.book.get(request.id) is None:
            refused = policy_refusal(request, peer, self.config, self.book.live_rate(caller))
            if refused is not None:
                return refused
        return self._decide(request, ends, snapshot)

    def reserve_local(
        self, request: ReservationRequest, src: DeviceId, dst: DeviceId
    ) -> Hold | Refusal:
        """The origin's own segment (no peer policy: the request is this domain's own)."""
        self.expire()
        result = self._decide(request, (src, dst), self._topology())
        self._record(self.name, "interdomain.reserve", request.id, result, _summary(request))
        return result

    def _decide(
        self,
        request: ReservationRequest,
        ends: tuple[DeviceId, DeviceId],
        snapshot: TopologySnapshot,
    ) -> Hold | Refusal:
        return self.book.decide(
            request,
            ends,
            snapshot,
            self._intents.reservations(),
            self._intents.policy,
            self._clock(),
        )

    async def commit(self, caller: str, ident: str) -> Hold | Refusal:
        """Installs the held segment as an intent (the same id); a failure releases it."""
        result = await self._commit(caller, ident)
        self._record(caller, "interdomain.commit", ident, result)
        return result

    async def _commit(self, caller: str, ident: str) -> Hold | Refusal:
        hold = self.book.get(ident)
        if hold is None or hold.origin != caller:
            return Refusal(404, f"no reservation {ident}")
        if hold.state is HoldState.COMMITTED:
            return hold
        started = self.book.begin_commit(ident, self._clock())
        if isinstance(started, Refusal) or started.state is not HoldState.COMMITTING:
            return started
        if hold.state is HoldState.COMMITTING:  # a commit of the same id is under way
            return await self._wait_commit(ident)
        request = KeyRequest(
            hold.path.nodes[0],
            hold.path.nodes[-1],
            hold.request.master_sae,
            (hold.request.slave_sae,),
            QoS(hold.request.rate_bps, hold.request.rate_bps),
            key_mode=_mode(hold.request.key_mode),
        )  # not pinned to the held path: the intent may be re-routed inside the domain later
        try:
            intent = await self._intents.submit(request, intent_id=ident)
        except ControllerError as error:  # the details name internal nodes: kept here
            log.warning("segment of reservation %s not installed: %s", ident, error)
            self.book.release(ident, "install failed")
            return Refusal(502, f"install failed in domain {self.name}")
        if intent.state is not IntentState.INSTALLED:
            log.warning("segment of reservation %s not installed: %s", ident, intent.reason)
            await self._drop_intent(ident)
            self.book.release(ident, "install failed")
            status = 409 if intent.state is IntentState.REJECTED else 502
            return Refusal(status, f"the segment could not be installed in domain {self.name}")
        return self.book.committed(ident)

    async def _wait_commit(self, ident: str) -> Hold | Refusal:
        while True:
            hold = self.book.get(ident)
            if hold is None:
                return Refusal(404, f"no reservation {ident}")
            if hold.state is HoldState.COMMITTED:
                return hold
            if hold.state is not HoldState.COMMITTING:
                return Refusal(409, f"reservation {ident} is {hold.state.value}")
            await asyncio.sleep(0.01)

    async def release(self, caller: str, ident: str, reason: str = "") -> Hold | Refusal:
        """Releases a reservation (withdraws its intent when committed); idempotent."""
        hold = self.book.get(ident)
        if hold is None or hold.origin != caller:
            result: Hold | Refusal = Refusal(404, f"no reservation {ident}")
        else:
            if hold.state in (HoldState.COMMITTED, HoldState.COMMITTING, HoldState.BROKEN):
                await self._drop_intent(ident)
            result = self.book.release(ident, reason or f"released by {caller}")
        self._record(caller, "interdomain.release", ident, result)
        return result

    async def _drop_intent(self, ident: str) -> None:
        try:
            await self._intents.withdraw(ident)
        except UnknownIntent:
            pass
        except ControllerError as error:
            log.warning("withdrawing the segment of reservation %s: %s", ident, error)

    def expire(self) -> list[Hold]:
        """Releases every reservation left uncommitted past its deadline."""
        expired = self.book.expire(self._clock())
        for hold in expired:
            self._audit.record(
                who(hold.origin), "peer", "interdomain.expire", hold.id, "ok", hold.reason
            )
        if expired:
            self._changed()
        return expired

    async def expire_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.expire()

    # ------------------------------------------------------------ audit

    def record_malformed(self, caller: str, detail: str) -> None:
        self._audit.record(who(caller), "peer", "interdomain.reserve", "-", "refused", detail)

    def _record(
        self, caller: str, action: str, ident: str, result: Hold | Refusal, detail: str = ""
    ) -> None:
        if not isinstance(result, Refusal):
            self._changed()
        if isinstance(result, Refusal):
            outcome = "refused" if result.status < 500 else "failed"
            text = f"{result.status} {result.reason}"
        else:
            outcome, text = "ok", result.state.value
        role = "self" if caller == self.name else "peer"
        self._audit.record(
            who(caller), role, action, ident, outcome, " ".join((detail, text)).strip()
        )


def _summary(request: ReservationRequest) -> str:
    return f"{request.master_sae}>{request.slave_sae} {request.rate_bps} bit/s {request.key_mode}:"


def _mode(text: str) -> KeyMode:
    """The key mode a reservation asked for (an unknown one was refused by policy)."""
    try:
        return KeyMode(text)
    except ValueError:
        return KeyMode.QKD_PREFERRED


def answer(result: Hold | Refusal) -> tuple[int, Mapping[str, object]]:
    """HTTP status and body of a protocol step."""
    if isinstance(result, Refusal):
        return result.status, {"detail": result.reason}
    return 200, {"id": result.id, "state": result.state.value, "expires_at": result.expires_at}
