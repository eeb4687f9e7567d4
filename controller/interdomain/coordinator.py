"""The origin's side of an inter-domain request: domain path on the peers' views, reserve here
and at every domain on it, then commit everywhere (far end first) or release everywhere.

A refusal, a peer that does not answer within `peer_timeout_s` (a commit, which installs over
NETCONF, within three times that), or a commit failing after
others committed: every domain reached is released (a committed segment is withdrawn), and
the refusal is written on the source node like any rejection. Withdrawing the origin's own
intent releases the other domains' segments. Views are fetched from every peer periodically,
and this domain's view is pushed to every peer when it may have changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.errors import ControllerError, UnknownIntent
from controller.intents.service import IntentEvent, IntentEventType, IntentService
from controller.interdomain.client import COMMIT_FACTOR, PeerAnswer
from controller.interdomain.reservations import Hold, HoldState, Refusal, ReservationRequest
from controller.interdomain.route import DomainRoute, plan_routes
from controller.interdomain.service import DomainService
from controller.interdomain.view import DomainView
from controller.model import IntentState, KeyRequest, TopologySnapshot

log = logging.getLogger(__name__)


class PeerClient(Protocol):
    """What the coordinator needs of a peer domain's controller (client.HttpPeer has it)."""

    async def view(self) -> DomainView: ...
    async def push_view(self, view: DomainView) -> PeerAnswer: ...
    async def reserve(self, request: ReservationRequest) -> PeerAnswer: ...
    async def commit(self, ident: str) -> PeerAnswer: ...
    async def release(self, ident: str) -> PeerAnswer: ...
    async def reservations(self) -> list[dict[str, Any]] | None: ...


@dataclass(frozen=True)
class Outcome:
    """How an inter-domain request ended."""

    id: str
    committed: bool
    domains: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class _Failed:
    """One route that did not work out (everything it reserved released)."""

    ident: str
    reason: str
    final: bool = False  # a refusal no other route avoids (policy, malformed, no answer)


@dataclass(frozen=True)
class Session:
    request: KeyRequest
    route: DomainRoute


class Coordinator:
    def __init__(
        self,
        domain: DomainService,
        peers: Mapping[str, PeerClient],
        intents: IntentService,
        topology: Callable[[], TopologySnapshot],
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domain = domain
        self.peers = peers
        self._intents = intents
        self._topology = topology
        self.timeout_s = timeout_s
        self._clock = clock
        self.sessions: dict[str, Session] = {}  # committed inter-domain associations from here
        self.refused: dict[str, KeyRequest] = {}  # rejection record id -> request, retried
        self._retried = clock()
        self._pending: set[tuple[str, str]] = set()
        self._moving: set[str] = set()  # sessions being re-routed
        self._seen: dict[str, float] = {}  # peer -> when its view was last fetched
        self._tasks: set[asyncio.Task[Any]] = set()
        intents.listeners.add(self._on_intent)
        intents.listeners.add(lambda event: self.push_soon())  # free rates changed
        domain.on_change.append(self.push_soon)
        self._pushing: asyncio.Task[None] | None = None
        self._dirty = False

    @property
    def own(self) -> str:
        return self.domain.name

    # ------------------------------------------------------------ which requests

    def claims(self, request: KeyRequest) -> bool:
        """An application request this domain cannot serve alone: its one slave SAE is not
        ours and its remote node is one of our borders; not a segment a peer reserved here,
        not one already installed."""
        config = self.domain.config
        if len(request.client_app_ids) != 1:
            return False
        master, slave = request.server_app_id, request.client_app_ids[0]
        if slave in config.saes or self._topology().name_of(request.dst) not in config.borders:
            return False
        for hold in self.domain.book.all():
            if (
                hold.origin != self.own
                and hold.state in (HoldState.RESERVED, HoldState.COMMITTING, HoldState.COMMITTED)
                and (hold.request.master_sae, hold.request.slave_sae) == (master, slave)
            ):
                return False
        return self._intents.find_active(request) is None

    # ------------------------------------------------------------ the two phases

    async def submit(self, request: KeyRequest, retry_of: str | None = None) -> Outcome:
        """Reserve in every domain of the best path, then commit everywhere; or release all.
        `retry_of`: the rejection record of an earlier attempt (replaced on success, kept as
        it is on another refusal)."""
        master, slave = request.server_app_id, request.client_app_ids[0]
        key = (master, slave)
        if key in self._pending:
            return Outcome("", False, reason="a request for the same SAEs is under way")
        self._pending.add(key)
        try:
            outcome = await self._submit(request, master, slave, retry_of)
        finally:
            self._pending.discard(key)
        if outcome.committed and retry_of is not None:
            self.refused.pop(retry_of, None)
            try:
                await self._intents.withdraw(retry_of)
            except ControllerError as error:
                log.warning("removing the rejection record %s: %s", retry_of, error)
        return outcome

    async def retry_refused(self) -> None:
        """Tries the refused requests again (rate may have come free in another domain)."""
        for old, request in list(self.refused.items()):
            try:
                state = self._intents.get(old).state
            except UnknownIntent:
                state = IntentState.WITHDRAWN
            if state is not IntentState.REJECTED:  # withdrawn meanwhile: the app is gone
                self.refused.pop(old, None)
                continue
            await self.submit(request, retry_of=old)

    async def _submit(
        self, request: KeyRequest, master: str, slave: str, retry_of: str | None
    ) -> Outcome:
        for ident, session in self.sessions.items():
            if session.request == request:
                return Outcome(ident, True, session.route.domains, "already installed")
        routes = self.plan(request)
        ident = str(uuid.uuid4())
        if isinstance(routes, str):
            return await self._refuse(request, ident, [], routes, retry_of)
        attempt = await self._establish(request, routes)
        if isinstance(attempt, _Failed):
            return await self._refuse(request, attempt.ident, [], attempt.reason, retry_of)
        return attempt

    def plan(
        self, request: KeyRequest, avoid: frozenset[str] = frozenset()
    ) -> list[DomainRoute] | str:
        """The ways toward the request's slave SAE on the peers' views, best first: each
        border pair toward a neighbour (this domain's rate from the master's node to each own
        border counts), never through a border in `avoid`."""
        own_view = self.domain.view()
        master = request.server_app_id
        own_rate = {b.node: own_view.rate(b.node, master) for b in own_view.borders}
        return plan_routes(
            self.own,
            self.domain.config.borders,
            self.domain.peer_views,
            request.client_app_ids[0],
            partners=self.domain.config.partners,
            own_rate=own_rate,
            avoid=avoid,
        )

    async def _establish(self, request: KeyRequest, routes: list[DomainRoute]) -> Outcome | _Failed:
        """Tries the routes in order: a border out (a domain without capacity or a way to it)
        moves on to the next; a refusal by policy (the same on every route) ends it. Nothing
        stays reserved anywhere from a route that failed."""
        reasons: list[str] = []
        last = ""
        for route in routes:
            ident = str(uuid.uuid4())
            last = ident
            result = await self._try_route(request, ident, route)
            if isinstance(result, Outcome):
                return result
            reasons.append(result.reason)
            if result.final:
                break
        reason = (
            reasons[0]
            if len(reasons) == 1
            else "; ".join(
                f"via {', '.join(sorted(route.borders))}: {why}"
                for route, why in zip(routes, reasons, strict=False)
            )
        )
        return _Failed(last, reason, True)

    async def _try_route(
        self, request: KeyRequest, ident: str, route: DomainRoute
    ) -> Outcome | _Failed:
        master, slave = request.server_app_id, request.client_app_ids[0]
        mode = request.key_mode.value
        egress = route.egress or self._topology().name_of(request.dst)
        try:
            dst = self._topology().resolve(egress)
        except KeyError:
            return _Failed(ident, f"domain {self.own}: border {egress} is not reachable now")
        mine = ReservationRequest(
            ident, master, slave, None, egress, request.qos.wanted, mode, self.own
        )
        local = self.domain.reserve_local(mine, request.src, dst)
        if isinstance(local, Refusal):
            return _Failed(ident, f"domain {self.own}: {local.reason}", local.status == 403)
        reached: list[str] = []
        for segment in route.segments:
            peer = self.peers.get(segment.domain)
            if peer is None:
                reason = f"domain {segment.domain} is not a peer of domain {self.own}"
                return await self._undo(ident, reached, reason)
            reached.append(segment.domain)  # a peer that did not answer may still hold it
            asked = ReservationRequest(
                ident,
                master,
                slave,
                segment.ingress,
                segment.egress,
                request.qos.wanted,
                mode,
                self.own,
            )
            answer = await self._bounded(peer.reserve(asked))
            if answer.status not in (200, 201) or answer.state != HoldState.RESERVED.value:
                reason = _refusal(segment.domain, "reserve", answer)
                # policy or malformed: the same on every route; no answer: asking the same
                # controller again per border pair would multiply the wait
                final = answer.status in (0, 400, 403)
                return await self._undo(ident, reached, reason, final)
        for segment in reversed(route.segments):  # far end first: keys flow once A installs
            commit = self.peers[segment.domain].commit(ident)
            answer = await self._bounded(commit, COMMIT_FACTOR)
            if answer.status != 200 or answer.state != HoldState.COMMITTED.value:
                reason = _refusal(segment.domain, "commit", answer)
                return await self._undo(ident, reached, reason)
        committed = await self.domain.commit(self.own, ident)
        if isinstance(committed, Refusal):
            return await self._undo(ident, reached, f"domain {self.own}: {committed.reason}")
        self.sessions[ident] = Session(request, route)
        log.info(
            "inter-domain %s %s>%s over %s via %s committed",
            ident,
            master,
            slave,
            route.domains,
            ", ".join(sorted(route.borders)),
        )
        return Outcome(ident, True, route.domains)

    async def _undo(
        self, ident: str, reached: list[str], reason: str, final: bool = False
    ) -> _Failed:
        """Releases what one route reserved (each domain reached, and here)."""
        await self._release_at(ident, reached)
        if self.domain.book.get(ident) is not None:
            await self.domain.release(self.own, ident, reason)
        return _Failed(ident, reason, final)

    async def _bounded(self, call: Awaitable[PeerAnswer], factor: float = 1.0) -> PeerAnswer:
        bound = self.timeout_s * factor
        try:
            async with asyncio.timeout(bound):
                return await call
        except TimeoutError:
            return PeerAnswer(0, {"detail": f"no answer within {bound:g} s"})

    async def _refuse(
        self,
        request: KeyRequest,
        ident: str,
        reached: list[str],
        reason: str,
        retry_of: str | None,
    ) -> Outcome:
        """Release everywhere (at once, each bounded), then say why on the source node (a
        retry keeps the record of the first refusal)."""
        log.warning("inter-domain %s refused: %s", ident or "-", reason)
        await self._release_at(ident, reached)
        hold = self.domain.book.get(ident)
        if hold is not None and hold.state not in (HoldState.RELEASED, HoldState.EXPIRED):
            await self.domain.release(self.own, ident, reason)
        if retry_of is None:
            rejected = await self._intents.reject(request, f"inter-domain: {reason}")
            self.refused[rejected.intent_id] = request
        return Outcome(ident, False, tuple(reached), reason)

    async def _release_at(self, ident: str, domains: list[str]) -> None:
        calls = [self._bounded(self.peers[d].release(ident)) for d in domains if d in self.peers]
        answers = await asyncio.gather(*calls)
        for domain, answer in zip(domains, answers, strict=False):
            if answer.status not in (200, 404):
                log.warning("release of %s in domain %s: %s", ident, domain, answer.detail)

    async def withdraw(self, ident: str) -> None:
        """The origin's segment is gone: release the other domains' segments."""
        session = self.sessions.pop(ident, None)
        if session is None:
            return
        await self._release_at(ident, [s.domain for s in session.route.segments])
        hold = self.domain.book.get(ident)
        if isinstance(hold, Hold) and hold.state is not HoldState.RELEASED:
            self.domain.book.release(ident, "withdrawn at the origin")

    async def reroute(self, ident: str, avoid: frozenset[str], why: str) -> Outcome | None:
        """A committed association lost a border (`avoid`): set it up again through another
        border pair, then release the old one everywhere; when no other pair is left, release
        it everywhere and record the refusal on the source node (retried as any refusal)."""
        session = self.sessions.get(ident)
        if session is None or ident in self._moving:
            return None
        self._moving.add(ident)
        try:
            log.warning("inter-domain %s lost a border (%s): re-routing", ident, why)
            request = session.request
            routes = self.plan(request, avoid)
            attempt: Outcome | _Failed = (
                _Failed("", routes, True)
                if isinstance(routes, str)
                else await self._establish(request, routes)
            )
            self.sessions.pop(ident, None)
            await self._release_at(ident, [s.domain for s in session.route.segments])
            await self.domain.release(self.own, ident, f"re-routed: {why}")
            if isinstance(attempt, Outcome):
                log.info("inter-domain %s re-routed as %s", ident, attempt.id)
                return attempt
            reason = f"{why}; no other border: {attempt.reason}"
            rejected = await self._intents.reject(request, f"inter-domain: {reason}")
            self.refused[rejected.intent_id] = request
            return Outcome(ident, False, (), reason)
        finally:
            self._moving.discard(ident)

    async def check_sessions(self) -> None:
        """Asks each domain of a committed association how its segment stands; a segment
        broken (its domain has no path left for it) or gone: re-routed around its borders."""
        domains = sorted({s.domain for x in self.sessions.values() for s in x.route.segments})
        if not domains:
            return
        calls = [self._reservations_of(d) for d in domains]
        lists = dict(zip(domains, await asyncio.gather(*calls), strict=True))
        for ident, session in list(self.sessions.items()):
            for segment in session.route.segments:
                holds = lists.get(segment.domain)
                if holds is None:
                    continue  # no answer: the view's staleness decides, not one round
                state = next((h.get("state") for h in holds if h.get("id") == ident), None)
                if state not in (HoldState.COMMITTED.value, HoldState.COMMITTING.value):
                    borders = frozenset(b for b in (segment.ingress, segment.egress) if b)
                    why = f"domain {segment.domain}: segment {state or 'gone'}"
                    await self.reroute(ident, borders | self._partners_of(borders), why)
                    break

    def _partners_of(self, borders: frozenset[str]) -> frozenset[str]:
        """The nodes at the same sites as `borders`, as this domain and the views know them."""
        found = {own for own, peer in self.domain.config.partners.items() if peer in borders}
        for view in self.domain.peer_views.values():
            for border in view.borders:
                if border.node in borders and border.peer_node is not None:
                    found.add(border.peer_node)
                if border.peer_node in borders:
                    found.add(border.node)
        return frozenset(found)

    async def _reservations_of(self, domain: str) -> list[dict[str, Any]] | None:
        peer = self.peers.get(domain)
        if peer is None:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                return await peer.reservations()
        except TimeoutError:
            return None

    def _on_intent(self, event: IntentEvent) -> None:
        ident = event.intent.intent_id
        if ident not in self.sessions:
            return
        if event.type is IntentEventType.WITHDRAWN and ident not in self._moving:
            self._spawn(self.withdraw(ident))
        elif event.type is IntentEventType.FAILED:  # its own border cut off: another one
            egress = self.sessions[ident].route.egress
            avoid = frozenset({egress}) if egress else frozenset()
            self._spawn(self.reroute(ident, avoid | self._partners_of(avoid), event.intent.reason))

    def _spawn(self, call: Awaitable[Any]) -> None:
        async def run() -> None:
            await call

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Waits for the re-routes and releases under way (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ views

    async def refresh_views(self) -> None:
        """Fetches every peer's view at once; a view older than three rounds is dropped."""
        names = list(self.peers)
        results = await asyncio.gather(
            *(self._fetch(name) for name in names), return_exceptions=True
        )
        now = self._clock()
        stale = 3 * self.domain.config.view_interval_s
        for name, result in zip(names, results, strict=True):
            if isinstance(result, DomainView):
                if result.domain != name:
                    log.warning("peer %s sent the view of domain %s: ignored", name, result.domain)
                    continue
                self.domain.saw_view(name, result)
                self._seen[name] = now
            elif now - self._seen.get(name, now - stale - 1) > stale:
                self.domain.peer_views.pop(name, None)

    def push_soon(self) -> None:
        """Sends this domain's view to every peer (at most one push under way; a change
        meanwhile makes one more)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving: nobody to tell
        if self._pushing is not None and not self._pushing.done():
            self._dirty = True
            return
        self._pushing = loop.create_task(self._push())

    async def _push(self) -> None:
        self._dirty = True
        while self._dirty:
            self._dirty = False
            view = self.domain.view()
            calls = [self._bounded(peer.push_view(view)) for peer in self.peers.values()]
            await asyncio.gather(*calls)

    async def settle_pushes(self) -> None:
        while self._pushing is not None and not self._pushing.done():
            await asyncio.gather(self._pushing, return_exceptions=True)

    async def _fetch(self, name: str) -> DomainView:
        async with asyncio.timeout(self.timeout_s):
            return await self.peers[name].view()

    async def run_views(self) -> None:
        """Fetches the views every `view_interval_s`; retries refused requests every five."""
        interval = self.domain.config.view_interval_s
        while True:
            try:
                await self.refresh_views()
                await self.check_sessions()
                if self.refused and self._clock() - self._retried >= 5 * interval:
                    self._retried = self._clock()
                    await self.retry_refused()
            except Exception:  # the loop must outlive any one round
                log.exception("inter-domain views or retries")
            await asyncio.sleep(interval)


def _refusal(domain: str, step: str, answer: PeerAnswer) -> str:
    if answer.status == 0:
        return f"domain {domain} did not answer the {step}: {answer.detail}"
    return f"domain {domain} refused the {step} ({answer.status}): {answer.detail or answer.state}"
