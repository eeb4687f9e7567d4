"""A border KM's ETSI 020 face: hands keys to peer domains' KMs and takes keys from them.

Sending (`hand_off`): the keys are journaled as sent, POSTed to the peer's ext_keys (retried
with the same key_IDs until the deadline), and the call returns only once the peer's ack
`relayed` arrived at this KM's callback; otherwise it raises RelayFailure naming the peer, and
a void is owed to the peer (journaled, retried in the background) so that no key lingers there.

Receiving (`ext_keys`): the keys are journaled (idempotent by key_ID; another value under a
known key_ID is refused), answered 200, then delivered on in the background — stored for a
target SAE of this node, relayed along this domain's association toward the target, or handed
off again — and the ack (`relayed` or `failed`) is POSTed to the sender's callback. A restart
resumes every journaled key not yet delivered, and sends every ack still owed.

Voiding (`void`): the sender takes keys back. They are journaled voided, then taken back
wherever they went — removed from the key store here, voided along this domain's
association to the end KM (`void_relay`), or voided at the next border — and the answer says
per key `voided` or `failed` (a slave SAE had claimed it). A void not finished within its
time is answered 503 (the sender retries) and finished in the background, after a restart too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from common.audit import AuditLog
from common.config import Address
from common.https_server import HttpsServer
from common.tracing import Tracer
from km.config import KmConfig, KmInterdomain, KmInterdomainPeer
from km.etsi014.server import PeerCertH11Protocol
from km.interdomain.app import Etsi020Error, create_app
from km.interdomain.client import Etsi020Client, PeerRefused, PeerUnreachable
from km.interdomain.core import (
    HandOff,
    Route,
    WireError,
    check_key_ids,
    parse_hand_off,
    route_of,
    same_value,
    to_wire,
)
from km.interdomain.journal import Incoming, InState, Journal, OutState, VoidState
from km.interdomain.tls import client_context, load_cas, server_context
from km.interdomain.wire import (
    API_BASE,
    Ack,
    AckResult,
    AckStatus,
    ExtKeys,
    ExtKeysResult,
    VoidRequest,
)
from km.key_store import KeyStore, StoredKey, VoidOutcome
from km.relay.errors import FailureKind, RelayFailure
from km.relay.voids import VoidResult
from km.supply import SupplyError

log = logging.getLogger(__name__)

JOURNAL_NAME = "interdomain.sqlite"  # in the KM's data_dir
MAINTENANCE_S = 0.5  # pause between two rounds of owed voids and acks
# Settled journal rows are kept this long: a retried hand-off is recognised by key_ID only
# while its row exists (retries last seconds), and then purged every PURGE_INTERVAL_S.
JOURNAL_KEEP_S = 86400.0
PURGE_INTERVAL_S = 600.0

# Relays `keys` (one master, one set of slaves, all at `node`) along this domain's association.
RelayKeys = Callable[[Sequence[StoredKey], str], Awaitable[None]]
# Voids keys relayed along this domain's association: (key_ids, master, slaves, node, deadline).
VoidRelay = Callable[[Sequence[str], str, tuple[str, ...], str, float], Awaitable[VoidResult]]
# Share of ack_timeout_s a void may take before it is answered 503 (the sender retries).
VOID_SHARE = 0.6
_ACK_STATE = {
    InState.RELAYED: AckStatus.RELAYED,
    InState.FAILED: AckStatus.FAILED,
    InState.VOIDED: AckStatus.VOIDED,
}


class Interdomain:
    def __init__(
        self,
        config: KmConfig,
        store: KeyStore,
        *,
        relay: RelayKeys | None = None,
        void_relay: VoidRelay | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        if config.interdomain is None:
            raise ValueError(f"key manager {config.node} has no interdomain section")
        self.config = config
        self.settings: KmInterdomain = config.interdomain
        self.node = config.node
        self.store = store
        self.relay = relay
        self.void_relay = void_relay
        self.audit = audit
        self.clock = clock
        self.tracer = tracer or Tracer(f"km:{config.node}", None)
        self.journal = Journal(config.data_dir / JOURNAL_NAME)
        tls, cas = config.tls, self.settings.trusted_cas
        self.client = Etsi020Client(client_context(tls, cas))
        issuers = {p.kme_id: load_cas(p.ca) for p in self.settings.peers if p.ca is not None}
        app = create_app(self, [p.kme_id for p in self.settings.peers], self._refused, issuers)
        self.server = HttpsServer(
            app,
            self.settings.listen,
            str(tls.cert),
            lambda: server_context(tls, cas),
            "ETSI 020",
            http=PeerCertH11Protocol,
        )
        self._waiters: dict[str, asyncio.Future[tuple[AckStatus, str]]] = {}
        self._forwarding: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._maintenance: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """This KM's ETSI 020 base URL (…/kmapi/v1), as its peers reach it (`advertise`)."""
        where = self.settings.advertise or Address(self.server.host, self.server.port)
        return where.url("https") + API_BASE

    @property
    def ack_timeout_s(self) -> float:
        return self.settings.ack_timeout_s

    @property
    def callback_url(self) -> str:
        return self.url + "/ext_keys/ack"

    async def start(self) -> None:
        await self.server.start()
        for hand_off in self.journal.to_forward():
            log.info("resuming %d journaled key(s) from a hand-off", len(hand_off.keys))
            self._forward_later(hand_off)
        self._maintenance = asyncio.create_task(self._maintain(), name=f"020 {self.node}")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *self._forwarding.values()]
        if self._maintenance is not None:
            tasks.append(self._maintenance)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._maintenance = None
        await self.server.stop()
        await self.client.close()
        self.journal.close()

    # ================================================================ sending side

    def peer_for(self, slaves: Sequence[str]) -> KmInterdomainPeer | None:
        """The one peer reaching every slave, or None when some slave is not foreign."""
        peers = {self.settings.peer_for(s) for s in slaves}
        if len(peers) != 1:
            return None
        (peer,) = peers
        return peer

    def reaches(self, slaves: Sequence[str]) -> bool:
        """True when `slaves` are reached by handing keys to a peer domain's KM."""
        return bool(slaves) and self.peer_for(slaves) is not None

    async def hand_off(self, keys: Sequence[StoredKey], deadline: float) -> None:
        """Hands `keys` (one master and set of slaves) to the peer reaching the slaves; returns
        once it acknowledged `relayed`. RelayFailure (naming the peer) otherwise."""
        first = keys[0]
        peer = self.peer_for(first.slaves)
        if peer is None:
            raise RelayFailure(
                FailureKind.REFUSED,
                f"hand-off at {self.node}: no interdomain peer reaches {', '.join(first.slaves)}",
            )
        where = f"hand-off {self.node}→{peer.kme_id} ({peer.domain})"
        key_ids = [k.key_id for k in keys]
        limit = min(deadline, time.monotonic() + self.settings.ack_timeout_s)
        self.journal.sent(keys, peer.kme_id, self.clock())
        self.tracer.emit("interdomain.handoff.sent", peer=peer.kme_id, key_ids=key_ids)
        loop = asyncio.get_running_loop()
        waiters = {k: self._waiters.setdefault(k, loop.create_future()) for k in key_ids}
        try:
            try:
                await self.client.post(
                    peer.url + "/ext_keys", to_wire(keys, self.callback_url), limit
                )
            except PeerRefused as exc:
                raise self._give_up(
                    key_ids, FailureKind.REFUSED, f"{where}: refused ({exc})"
                ) from None
            except PeerUnreachable as exc:
                raise self._give_up(
                    key_ids, FailureKind.UNAVAILABLE, f"{where}: no answer ({exc})"
                ) from None
            remaining = limit - time.monotonic()
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    acks = await asyncio.gather(*waiters.values())
            except TimeoutError:
                raise self._give_up(
                    key_ids, FailureKind.UNAVAILABLE, f"{where}: no ack within the deadline"
                ) from None
            bad = [(status, message) for status, message in acks if status is not AckStatus.RELAYED]
            if bad:
                status, message = bad[0]
                raise self._give_up(
                    key_ids, FailureKind.UNAVAILABLE, f"{where}: acknowledged {status}: {message}"
                )
        finally:
            for key_id in key_ids:
                if self._waiters.get(key_id) is waiters[key_id]:
                    del self._waiters[key_id]
        log.info("%s: %d key(s) relayed on", where, len(keys))  # journaled by `ack`
        self.tracer.emit("interdomain.handoff.acked", peer=peer.kme_id, key_ids=key_ids)

    async def supply_hand_off(self, keys: Sequence[StoredKey]) -> None:
        """`hand_off` for the key supply (an SAE of this very node asks keys for a foreign
        SAE): the deadline is the ack timeout, a failure is a SupplyError 503."""
        try:
            await self.hand_off(keys, time.monotonic() + self.settings.ack_timeout_s)
        except RelayFailure as exc:
            raise SupplyError(503, exc.message) from None

    def _give_up(self, key_ids: Sequence[str], kind: FailureKind, message: str) -> RelayFailure:
        """Owes the peer a void for `key_ids` (sent in the background); the failure to raise."""
        self.journal.set_outgoing(
            key_ids,
            OutState.VOIDING,
            only_from=[OutState.SENT, OutState.RELAYED, OutState.FAILED],
        )
        self._wake.set()
        log.warning("%s; voiding %d key(s)", message, len(key_ids))
        return RelayFailure(kind, message)

    async def ack(self, body: Ack, caller: str) -> AckResult:
        """The ack callback: a peer says what became of keys this KM handed to it."""
        ids = self._checked(body.key_ids)
        rows = self.journal.outgoing(ids)
        known = [k for k in ids if k in rows and rows[k].peer == caller]
        status = body.ack_status
        if status is AckStatus.RELAYED:
            self.journal.set_outgoing(known, OutState.RELAYED, only_from=[OutState.SENT])
        elif status is AckStatus.FAILED:
            self.journal.set_outgoing(known, OutState.FAILED, only_from=[OutState.SENT])
        else:  # voided, or the peer does not hold the key: nothing is left there
            self.journal.set_outgoing(known, OutState.VOIDED)
        for key_id in known:
            waiter = self._waiters.get(key_id)
            if waiter is not None and not waiter.done():
                waiter.set_result((status, body.message or ""))
        not_present = [k for k in ids if k not in known]
        if not_present:
            log.info("ack %s from %s names %d unknown key(s)", status, caller, len(not_present))
        return AckResult(key_ids=known, ack_status=status, not_present=not_present)

    # ================================================================ receiving side

    async def ext_keys(self, body: ExtKeys, caller: str) -> ExtKeysResult:
        try:
            hand_off = parse_hand_off(body, max_size_bits=self.config.settings.max_key_size_bits)
            for target in hand_off.targets:
                route_of(target, self.node, self.config.applications, self.settings)
            self._check_callback(hand_off.callback, caller)
            received = self.journal.receive(hand_off, caller, self.clock())
        except WireError as exc:
            log.info("ext_keys from %s refused: %s", caller, exc)
            raise Etsi020Error(400, str(exc), [{"loc": exc.field, "msg": exc.why}]) from None
        log.info(
            "ext_keys from %s: %d new, %d duplicate key(s) for %s",
            caller, len(received.new), len(received.duplicates), ",".join(hand_off.targets),
        )  # fmt: skip
        self.tracer.emit(
            "interdomain.received",
            peer=caller,
            key_ids=list(received.new),
            duplicates=list(received.duplicates),
        )
        if received.new:
            fresh = set(received.new)
            self._forward_later(
                replace(hand_off, keys=tuple(k for k in hand_off.keys if k.key_id in fresh))
            )
        if received.duplicates:
            self._retried(hand_off, received.duplicates)
        return ExtKeysResult(key_ids=list(received.new), duplicates=list(received.duplicates))

    def _check_callback(self, callback: str, caller: str) -> None:
        """This KM POSTs acks with its own certificate: only to the calling peer's host."""
        peer = self.settings.peer_named(caller)
        assert peer is not None  # the app admits configured peers only
        if urlsplit(callback).hostname != urlsplit(peer.url).hostname:
            raise WireError("ack_callback_url", f"not on the host of {caller} ({peer.url})")

    def _retried(self, hand_off: HandOff, duplicates: Sequence[str]) -> None:
        """A retried hand-off: keys still in flight are left to their task; keys whose fate is
        settled get their ack again; keys journaled but idle (none running) are resumed."""
        rows = self.journal.incoming(duplicates)
        idle = [
            k
            for k in hand_off.keys
            if k.key_id in rows
            and rows[k.key_id].state is InState.RECEIVED
            and not self._in_flight(rows[k.key_id].batch)
        ]
        if idle:
            self._forward_later(replace(hand_off, keys=tuple(idle)))
        settled = [r for r in rows.values() if r.state is not InState.RECEIVED]
        if settled:
            self._spawn(self._send_acks(settled))

    def _in_flight(self, batch: str) -> bool:
        task = self._forwarding.get(batch)
        return task is not None and not task.done()

    def _forward_later(self, hand_off: HandOff) -> None:
        batch = hand_off.keys[0].key_id
        task = asyncio.create_task(self._forward(hand_off), name=f"020 forward {batch}")
        self._forwarding[batch] = task
        task.add_done_callback(lambda done: self._forget(batch, done))

    def _forget(self, batch: str, task: asyncio.Task[None]) -> None:
        if self._forwarding.get(batch) is task:
            del self._forwarding[batch]

    async def _forward(self, hand_off: HandOff) -> None:
        rows = self.journal.incoming(hand_off.key_ids)
        live = tuple(
            k
            for k in hand_off.keys
            if k.key_id in rows and rows[k.key_id].state is InState.RECEIVED
        )
        if not live:  # voided before they left
            return
        hand_off = replace(hand_off, keys=live)
        key_ids = list(hand_off.key_ids)
        try:
            await self._deliver(hand_off)
        except Exception as exc:  # RelayFailure, SupplyError, or a store that refused
            message = str(getattr(exc, "message", "")) or type(exc).__name__
            log.warning("keys handed to %s not delivered: %s", self.node, message)
            self.journal.settle(key_ids, InState.FAILED)
            await self._send_acks(list(self.journal.incoming(key_ids).values()), message)
            return
        # A void that came while the keys travelled on took them back already (the end KM
        # refuses a key_ID once voided): those stay voided.
        self.journal.settle(key_ids, InState.RELAYED)
        self.tracer.emit("interdomain.delivered", key_ids=key_ids)
        await self._send_acks(list(self.journal.incoming(key_ids).values()))

    async def _deliver(self, hand_off: HandOff) -> None:
        """Sends the keys on toward every target: store here, relay, or hand off again."""
        routes: dict[tuple[Route, str], list[str]] = {}
        for target in hand_off.targets:
            route, where = route_of(target, self.node, self.config.applications, self.settings)
            routes.setdefault((route, where), []).append(target)
        for (route, where), targets in routes.items():
            keys = [replace(k, slaves=tuple(targets)) for k in hand_off.keys]
            if route is Route.STORE:
                self._store(keys)
            elif route is Route.RELAY:
                if self.relay is None:
                    raise RelayFailure(
                        FailureKind.REFUSED, f"{self.node} has no relay toward {where}"
                    )
                await self.relay(keys, where)
            else:
                deadline = time.monotonic() + self.settings.ack_timeout_s
                await self.hand_off(keys, deadline)

    def _store(self, keys: Sequence[StoredKey]) -> None:
        """Stores keys for local SAEs; keys stored before with the same value are kept."""
        held = self.store.lookup([k.key_id for k in keys])
        for key in keys:
            old = held.get(key.key_id)
            if old is not None and not same_value(old.material, key.material):
                raise RelayFailure(
                    FailureKind.TAMPERED, f"key {key.key_id} stored before with another value"
                )
        # origin "qkd": end-to-end keys relayed to here (this also lets a void that comes after
        # the slave claimed them learn that they were delivered)
        missing = [replace(k, origin=k.origin or "qkd") for k in keys if k.key_id not in held]
        if missing:
            self.store.add(missing, ready_for_master=False)

    async def void(self, body: VoidRequest, caller: str) -> AckResult:
        """The sender takes keys back: journaled voided at once, then taken back wherever they
        went (key store here, end KM of this domain's association, next border). The answer
        says per key: voided, failed (a slave SAE had claimed it), or not present (not handed
        here by the caller). 503 when the keys sent on could not be reached in time: the void
        goes on in the background, and the sender's retry gets the final answer."""
        ids = self._checked(body.key_ids)
        rows = self.journal.incoming(ids)
        known = [k for k in ids if k in rows and rows[k].peer == caller]
        not_present = [k for k in ids if k not in known]
        self.journal.begin_void(known)
        if known:
            deadline = time.monotonic() + self.settings.ack_timeout_s * VOID_SHARE
            await self._finish_voids(known, deadline)
        outcomes = {k: r.void for k, r in self.journal.incoming(known).items()}
        owed = [k for k in known if outcomes.get(k) is VoidState.OWED]
        if owed:
            self._wake.set()
            log.warning("void from %s: %d key(s) not yet taken back: retry", caller, len(owed))
            raise Etsi020Error(
                503, f"void of {len(owed)} key(s) under way in domain {self.settings.domain}: retry"
            )
        failed = [k for k in known if outcomes.get(k) is VoidState.DELIVERED]
        voided = [k for k in known if k not in failed]
        log.info(
            "void from %s: %d key(s) voided, %d already delivered, %d not present",
            caller, len(voided), len(failed), len(not_present),
        )  # fmt: skip
        self.tracer.emit(
            "interdomain.voided",
            peer=caller,
            key_ids=voided,
            failed=failed,
            not_present=not_present,
        )
        if failed and self.audit is not None:
            self.audit.record(
                f"urn:qkdsdn:km:{caller}", "km", "interdomain.void", self.node, "failed",
                f"{len(failed)} key(s) already delivered to their slave SAE",
            )  # fmt: skip
        return AckResult(
            key_ids=voided, ack_status=AckStatus.VOIDED, not_present=not_present, failed=failed
        )

    async def _finish_voids(self, key_ids: Sequence[str], deadline: float) -> None:
        """Takes back the keys of `key_ids` whose void is owed, wherever they were sent on; the
        journal records each final outcome (keys still unreachable stay owed)."""
        groups: dict[tuple[str, tuple[str, ...]], list[Incoming]] = {}
        for row in self.journal.incoming(key_ids).values():
            if row.void is VoidState.OWED:
                groups.setdefault((row.master, row.targets), []).append(row)
        for (master, targets), rows in groups.items():
            ids = [r.key_id for r in rows]
            outcomes, reached = await self._void_routes(ids, master, targets, deadline)
            final: dict[str, VoidState] = {}
            now = self.clock()
            for row in rows:
                outcome = outcomes.get(row.key_id, [])
                if VoidOutcome.DELIVERED in outcome:
                    final[row.key_id] = VoidState.DELIVERED
                elif reached or (row.expires_at is not None and row.expires_at <= now):
                    final[row.key_id] = VoidState.VOIDED  # removed, never arrived, or expired
            self.journal.end_void(final)

    async def _void_routes(
        self, ids: list[str], master: str, targets: tuple[str, ...], deadline: float
    ) -> tuple[dict[str, list[VoidOutcome]], bool]:
        """Voids `ids` on every route their targets take from here; (outcomes per key, whether
        every route answered)."""
        routes: dict[tuple[Route, str], list[str]] = {}
        for target in targets:
            try:
                route, where = route_of(target, self.node, self.config.applications, self.settings)
            except WireError:
                continue  # no longer reached from here: nothing was sent that way since
            routes.setdefault((route, where), []).append(target)
        outcomes: dict[str, list[VoidOutcome]] = {}
        reached = True
        for (route, where), slaves in routes.items():
            try:
                if route is Route.STORE:
                    result = VoidResult.of(self.store.void(ids, self.clock()))
                elif route is Route.RELAY:
                    if self.void_relay is None:
                        raise RelayFailure(FailureKind.REFUSED, f"{self.node} has no relay")
                    result = await self.void_relay(ids, master, tuple(slaves), where, deadline)
                else:
                    result = await self._void_at_peer(where, ids, deadline)
            except (RelayFailure, PeerUnreachable) as exc:
                message = getattr(exc, "message", "") or str(exc)
                log.warning(
                    "void of %d key(s) toward %s not done yet: %s", len(ids), where, message
                )
                reached = False
                continue
            for key_id, outcome in result.outcomes().items():
                outcomes.setdefault(key_id, []).append(outcome)
        return outcomes, reached

    async def _void_at_peer(self, kme_id: str, ids: Sequence[str], deadline: float) -> VoidResult:
        """Voids at peer `kme_id` the keys of `ids` this KM handed to it (others: not present);
        PeerUnreachable when it gives no final answer before `deadline`."""
        handed = self.journal.outgoing(ids)
        mine = [k for k in ids if k in handed and handed[k].peer == kme_id]
        absent = tuple(k for k in ids if k not in mine)
        peer = self.settings.peer_named(kme_id)
        if not mine:
            return VoidResult(not_present=absent)
        self.journal.set_outgoing(
            mine, OutState.VOIDING, only_from=[OutState.SENT, OutState.RELAYED, OutState.FAILED]
        )
        if peer is None:
            log.error("void owed to %s, no longer a peer: dropped", kme_id)
            self.journal.set_outgoing(mine, OutState.VOIDED)
            return VoidResult(not_present=tuple(ids))
        try:
            answer = await self.client.post(
                peer.url + "/ext_keys/void", {"key_ids": mine}, deadline
            )
        except PeerRefused as exc:  # answered: asking again would not change the answer
            log.error("void of %d key(s) refused by %s: %s", len(mine), kme_id, exc)
            answer = {}
        self.journal.set_outgoing(mine, OutState.VOIDED, only_from=[OutState.VOIDING])
        failed = tuple(k for k in _ids(answer.get("failed")) if k in mine)
        if failed:
            log.warning("void at %s: %d key(s) already delivered there", kme_id, len(failed))
        voided = tuple(k for k in mine if k not in failed)
        return VoidResult(voided=voided, delivered=failed, not_present=absent)

    async def void_handed(self, key_ids: Sequence[str], deadline: float) -> VoidResult:
        """A void relayed to this KM, the end of its domain's segment: the keys were handed
        to a peer domain; void them there. RelayFailure when a peer does not answer in time."""
        handed = self.journal.outgoing(key_ids)
        by_peer: dict[str, list[str]] = {}
        for key_id in key_ids:
            if key_id in handed:
                by_peer.setdefault(handed[key_id].peer, []).append(key_id)
        outcomes = {k: VoidOutcome.NOT_PRESENT for k in key_ids if k not in handed}
        for kme_id, ids in by_peer.items():
            try:
                result = await self._void_at_peer(kme_id, ids, deadline)
            except PeerUnreachable as exc:
                self._wake.set()  # the void stays owed to the peer: retried in the background
                raise RelayFailure(
                    FailureKind.UNAVAILABLE, f"void {self.node}→{kme_id}: no answer ({exc})"
                ) from None
            outcomes.update(result.outcomes())
        return VoidResult.of(outcomes)

    # ================================================================ owed acks and voids

    async def _send_acks(self, rows: Sequence[Incoming], message: str = "") -> bool:
        """POSTs the ack of each settled row to its sender's callback; True if all arrived."""
        groups: dict[tuple[str, InState, str, tuple[str, ...]], list[str]] = {}
        for row in rows:
            if row.state is InState.RECEIVED or row.acked:
                continue
            groups.setdefault((row.callback, row.state, row.master, row.targets), []).append(
                row.key_id
            )
        all_sent = True
        for (callback, state, master, targets), ids in groups.items():
            ack = {
                "key_ids": ids,
                "ack_status": _ACK_STATE[state].value,
                "initiator_sae_id": master,
                "target_sae_id": targets[0],
            }
            if message and state is InState.FAILED:
                ack["message"] = message
            deadline = time.monotonic() + self.settings.ack_timeout_s
            try:
                await self.client.post(callback, ack, deadline)
            except PeerRefused as exc:  # answered: asking again would not change the answer
                log.error("ack %s of %d key(s) refused by the sender: %s", state, len(ids), exc)
            except PeerUnreachable as exc:
                log.warning("ack %s of %d key(s) not delivered: %s", state, len(ids), exc)
                all_sent = False
                self._wake.set()  # owed now: the maintenance loop retries it
                continue
            self.journal.mark_acked(ids, state)
        return all_sent

    async def _maintain(self) -> None:
        """Sends the voids and acks still owed (after a failure or a restart), until stopped.
        Idle (nothing owed): it sleeps until woken (or the next purge of old journal rows);
        else it retries every MAINTENANCE_S."""
        owed = True  # a restart may have left some
        purged = 0.0
        while not self._stopping:
            # asyncio.timeout, not wait_for: 3.11's wait_for may swallow a cancellation that
            # comes as its timeout fires, and this loop would never end (measured in a test).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAINTENANCE_S if owed else PURGE_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if time.monotonic() - purged >= PURGE_INTERVAL_S:
                    purged = time.monotonic()
                    self.journal.purge(self.clock() - JOURNAL_KEEP_S)
                await self._send_voids()
                acks = [r for r in self.journal.unacked() if not self._in_flight(r.batch)]
                if acks:
                    await self._send_acks(acks)
                owed = bool(self.journal.voids_owed() or self.journal.voids_in_progress()) or any(
                    not self._in_flight(r.batch) for r in self.journal.unacked()
                )
            except Exception as exc:  # keep going: one bad round must not end the loop
                log.error("interdomain maintenance failed: %s", type(exc).__name__)
                owed = True

    async def _send_voids(self) -> None:
        for kme_id, ids in self.journal.voids_owed().items():
            deadline = time.monotonic() + self.settings.ack_timeout_s
            try:
                await self._void_at_peer(kme_id, ids, deadline)
            except PeerUnreachable:
                continue  # retried next round
        owed = [r.key_id for r in self.journal.voids_in_progress()]
        if owed:
            await self._finish_voids(owed, time.monotonic() + self.settings.ack_timeout_s)

    # ================================================================ helpers

    def _checked(self, key_ids: Sequence[str]) -> list[str]:
        try:
            check_key_ids(key_ids)
        except WireError as exc:
            raise Etsi020Error(400, str(exc), [{"loc": exc.field, "msg": exc.why}]) from None
        return list(dict.fromkeys(key_ids))

    def _refused(self, who: str, why: str) -> None:
        log.warning("ETSI 020 caller refused: %s (%s)", who, why)
        if self.audit is not None:
            self.audit.record(who, "km", "interdomain.call", self.node, "refused", why)

    def _spawn(self, work: Awaitable[object]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ids(value: object) -> list[str]:
    """A list of key_IDs from a peer's JSON answer (anything else: none)."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]
