"""The link-key resynchronisation protocol between the two KMs of each PHYS link (SyncLink).

The caller sends its position, the answerer applies `LinkKeyPool.resync` with it and returns
the agreed position, the caller applies the same rule with that. A KM runs it for every link
when it starts (retried with bounded backoff until the peer answers), again at once whenever
a pool's position jumps (a lost batch, a module floor that moved), and before it retries a
hop the peer refused for a link-key index. docs/relay.md states the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from common.protos import relay_pb2 as pb
from common.tracing import Tracer
from km.link_pools import Backoff, LinkKeyPool, LinkKeyPools, Position, ResyncOutcome
from km.relay.client import RelayClient
from km.relay.errors import FailureKind, RelayFailure

log = logging.getLogger(__name__)

STARTUP_BACKOFF = Backoff(0.05, 1.0)
SYNC_RPC_TIMEOUT_S = 2.0
# How long an answerer waits to learn its own position from its module before it says
# UNAVAILABLE (the caller retries).
LOCATE_WAIT_S = 1.0
# After a jump, one exchange at most this often per link (a module floor moving all the time
# would otherwise call the peer for every batch); retried with STARTUP_BACKOFF until answered.
JUMP_RESYNC_INTERVAL_S = 0.2


class LinkSync:
    """Both sides of SyncLink for the PHYS links of one KM."""

    def __init__(
        self,
        node: str,
        qkdn_id: str,
        pools: LinkKeyPools,
        client: RelayClient,
        name_of: Callable[[str], str],
        tracer: Tracer,
    ) -> None:
        self.node = node
        self.qkdn_id = qkdn_id
        self.pools = pools
        self.client = client
        self.name_of = name_of
        self.tracer = tracer
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[asyncio.Task[None]] = []

    # ---------------------------------------------------------------- caller

    def start(self) -> None:
        """Synchronises every link in the background, each until its peer has answered once."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._until_synced(pool), name=f"sync {pool.link.label()}")
                for pool in self.pools.pools
            ]
            self._watchers = [
                asyncio.create_task(self._after_jumps(pool), name=f"jumps {pool.link.label()}")
                for pool in self.pools.pools
            ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._watchers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._watchers = []

    @property
    def starting(self) -> bool:
        """Some link has not completed its start-up exchange yet."""
        return any(not task.done() for task in self._tasks)

    async def _until_synced(self, pool: LinkKeyPool) -> None:
        for delay in STARTUP_BACKOFF.delays():
            if pool.synced:  # the peer's own start-up exchange reached us first
                return
            try:
                await self.sync(pool, SYNC_RPC_TIMEOUT_S)
                return
            except RelayFailure as exc:
                log.debug("%s: resync not done yet: %s", pool.link.label(), exc.message)
            await asyncio.sleep(delay)

    async def _after_jumps(self, pool: LinkKeyPool) -> None:
        """Whenever this end's position jumps, tells the peer at once (SyncLink) instead of
        leaving it to learn from a refused relay; retried until the peer answered."""
        while True:
            await pool.wait_jump()
            for delay in STARTUP_BACKOFF.delays():
                if not pool.needs_resync():  # the peer's own exchange reached us meanwhile
                    break
                try:
                    await self.sync(pool, SYNC_RPC_TIMEOUT_S, why="position jumped")
                    break
                except RelayFailure as exc:
                    log.debug(
                        "%s: resync after a jump not done: %s", pool.link.label(), exc.message
                    )
                await asyncio.sleep(delay)
            await asyncio.sleep(JUMP_RESYNC_INTERVAL_S)

    async def sync(self, pool: LinkKeyPool, timeout: float, why: str = "") -> ResyncOutcome:
        """One exchange with the peer KM; raises RelayFailure if it did not answer."""
        deadline = time.monotonic() + timeout
        link = pool.link
        where = f"resync {link.local_node}→{link.peer_node}"
        # No lock across the call: both KMs may call each other at once, and the rule is
        # monotonic (positions only grow), so interleaved exchanges still agree.
        await _located(pool, deadline, where)
        mine, intact, jumps = pool.for_exchange()
        request = pb.LinkPosition(
            qkdl_id=link.qkdl_id,
            sender=self.qkdn_id,
            next_even=mine.even,
            next_odd=mine.odd,
            intact_even=intact.even,
            intact_odd=intact.odd,
        )
        remaining = max(0.01, deadline - time.monotonic())
        answer = await self.client.sync_link(link.peer_node, request, remaining, where)
        if answer.qkdl_id != link.qkdl_id or answer.sender != link.peer_qkdn_id:
            raise RelayFailure(FailureKind.TAMPERED, f"{where}: answer for another link")
        outcome = pool.resync(
            Position.of(answer.next_even, answer.next_odd),
            peer_intact=Position.of(answer.intact_even, answer.intact_odd),
            answered=True,
            jumps_seen=jumps,
        )
        self._report(pool, outcome, "caller", why)
        return outcome

    # ---------------------------------------------------------------- answerer

    async def answer(self, request: pb.LinkPosition, peer_cn: str) -> pb.LinkPosition:
        """The answerer's side: checks the caller, applies the rule, returns the agreed position.

        Raises RelayFailure (REFUSED: wrong caller or link; UNAVAILABLE: position unknown)."""
        sender = self.name_of(request.sender)
        where = f"resync {sender}→{self.node}"
        if peer_cn != sender:
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: the TLS peer {peer_cn!r} may not speak for {sender}"
            )
        pool = next((p for p in self.pools.pools if p.link.qkdl_id == request.qkdl_id), None)
        if pool is None or pool.link.peer_qkdn_id != request.sender:
            raise RelayFailure(
                FailureKind.REFUSED,
                f"{where}: no PHYS link {request.qkdl_id} between {sender} and {self.node}",
            )
        await _located(pool, time.monotonic() + LOCATE_WAIT_S, where)
        outcome = pool.resync(
            Position.of(request.next_even, request.next_odd),
            peer_intact=Position.of(request.intact_even, request.intact_odd),
        )
        self._report(pool, outcome, "answerer")
        return pb.LinkPosition(
            qkdl_id=pool.link.qkdl_id,
            sender=self.qkdn_id,
            next_even=outcome.agreed.even,
            next_odd=outcome.agreed.odd,
            intact_even=outcome.kept_below.even,
            intact_odd=outcome.kept_below.odd,
        )

    def _report(self, pool: LinkKeyPool, outcome: ResyncOutcome, role: str, why: str = "") -> None:
        because = f" ({why})" if why else ""
        log.info(
            "%s: resynchronised (%s)%s %s", pool.link.label(), role, because, outcome.describe()
        )
        self.tracer.emit(
            "link_key.resync",
            qkdl_id=pool.link.qkdl_id,
            peer=pool.link.peer_node,
            role=role,
            reason=why or "start-up or refused hop",
            next_even=outcome.agreed.even,
            next_odd=outcome.agreed.odd,
            kept_below_even=outcome.kept_below.even,
            kept_below_odd=outcome.kept_below.odd,
            dropped_own=outcome.dropped_own,
            dropped_peer=outcome.dropped_peer,
            skipped=outcome.skipped,
        )


async def _located(pool: LinkKeyPool, deadline: float, where: str) -> None:
    """Waits until the module told this end where its stream starts."""
    while not pool.located:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RelayFailure(
                FailureKind.UNAVAILABLE, f"{where}: this end's module position is not known yet"
            )
        await pool.wait_change(remaining)
