"""Keys relayed to SAEs at another node (the key supply's `RemoteSupplier`): ahead or now.

For (master → slaves at another node) the supplier makes sure a key association is admitted
(registering the application with the node when there is none), then serves keys relayed
ahead first and relays freshly minted keys (`km/minting.py`) for the rest. After every request a background
task tops the buffer of keys relayed ahead back up to the association's `relay/buffer`
(the paper kept three), so the next request is answered without any relay on its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from common.tracing import Tracer
from km.associations import AdmissionState, AppRequest, Association, Associations
from km.config import KmConfig
from km.key_store import KeyStore, StoredKey
from km.minting import DEFAULT_KEY_TTL_S, KeyMint
from km.pqc.mode import KeyMode
from km.relay.errors import FailureKind, RelayFailure
from km.relay.forwarder import Forwarder
from km.relay.voids import VoidResult
from km.supply import SupplyError

log = logging.getLogger(__name__)

# Admission asks for one key per second by default; the controller checks it against the
# free key rate of every hop.
DEFAULT_MIN_BANDWIDTH_PER_KEY = 1
# Keys relayed ahead that expire sooner than this are not handed to the master.
EXPIRY_MARGIN_S = 60.0


class RelayedKeys:
    def __init__(
        self,
        config: KmConfig,
        store: KeyStore,
        associations: Associations,
        forwarder: Forwarder,
        *,
        admission_timeout_s: float = 10.0,
        key_ttl_s: float | None = DEFAULT_KEY_TTL_S,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.node = node = config.node
        self.store = store
        self.associations = associations
        self.forwarder = forwarder
        self.admission_timeout_s = admission_timeout_s
        self.key_ttl_s = key_ttl_s
        self.clock = clock
        self.mint = KeyMint(key_ttl_s, clock)
        self.tracer = tracer or Tracer(f"km:{node}", None)
        self.buffer_size_bits = config.settings.key_size_bits
        self._refills: dict[tuple[str, str], asyncio.Task[None]] = {}
        # The key mode registered with a new association (km/pqc sets it from the policy).
        self.key_mode_of: Callable[[str, Sequence[str]], KeyMode | None] = lambda *_: None

    # ---------------------------------------------------------------- RemoteSupplier

    async def enc_keys(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
        *,
        keys: Sequence[StoredKey] | None = None,
    ) -> list[StoredKey]:
        assoc = await self.ensure(master, slaves, slave_node, size_bits)
        if keys is not None:
            await self._relay(assoc, list(keys))
            return list(keys)
        single = slaves[0] if len(slaves) == 1 else None
        taken = [] if single is None else self.store.take_ready(master, single, number, size_bits)
        # A key relayed ahead that expired (or is about to) is of no use to the slave.
        usable_after = self.clock() + EXPIRY_MARGIN_S
        taken = [k for k in taken if k.expires_at is None or k.expires_at > usable_after]
        fresh = self.mint.keys(master, slaves, number - len(taken), size_bits)
        if fresh:
            try:
                await self._relay(assoc, fresh)
            except SupplyError:
                # Keys relayed ahead go back to the buffer: the master got nothing.
                if taken:
                    self.store.add(taken, ready_for_master=True)
                raise
        self.tracer.emit(
            "relay.served",
            master=master,
            slaves=list(slaves),
            from_buffer=not fresh,
            buffered=len(taken),
            relayed=len(fresh),
        )
        if single is not None and assoc.buffer > 0:
            self.schedule_refill(master, single, slave_node)
        return taken + fresh

    def ready_count(self, master: str, slave: str) -> int:
        return self.store.count_ready(master, slave)

    # ---------------------------------------------------------------- pieces

    async def ensure(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        size_bits: int,
        timeout: float | None = None,
    ) -> Association:
        """The admitted association, registering it if needed; SupplyError(503) when refused
        or not admitted within `timeout` (default: `admission_timeout_s`)."""
        if slave_node == self.node:
            raise SupplyError(400, f"SAEs {', '.join(slaves)} are local to {self.node}: no relay")
        try:
            slave_qkdn_id = self.config.qkdn_id_of(slave_node)
        except KeyError:
            raise SupplyError(400, f"unknown node {slave_node!r}") from None
        request = AppRequest(
            master=master,
            slaves=tuple(slaves),
            remote_qkdn_id=slave_qkdn_id,
            min_bandwidth=DEFAULT_MIN_BANDWIDTH_PER_KEY * size_bits,
            ttl_s=0 if self.key_ttl_s is None else int(self.key_ttl_s),
            key_mode=self.key_mode_of(master, slaves),
        )
        known = self.associations.view.source_association(master, slaves, slave_qkdn_id)
        wait = self.admission_timeout_s if timeout is None else timeout
        assoc = await self.associations.ensure(request, wait)
        if known is None or known.state is not assoc.state:
            self.tracer.emit(
                "association.admitted", app_id=assoc.app_id, master=master, slaves=list(slaves)
            )
        return assoc

    async def void(
        self,
        key_ids: Sequence[str],
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        deadline: float,
    ) -> VoidResult:
        """Takes back keys this KM relayed for master → slaves at `slave_node` (a void along
        the association's path). With no admitted association left, nothing can reach the
        far end: the keys are reported not present there (they expire unclaimed, if any
        arrived). RelayFailure when a KM on the path refuses or does not answer."""
        try:
            slave_qkdn_id = self.config.qkdn_id_of(slave_node)
        except KeyError:
            raise RelayFailure(FailureKind.REFUSED, f"unknown node {slave_node!r}") from None
        assoc = self.associations.view.source_association(master, slaves, slave_qkdn_id)
        if assoc is None or assoc.state is not AdmissionState.ADMITTED or assoc.next_hop is None:
            log.warning(
                "void of %d key(s) toward %s: no admitted association %s→%s left",
                len(key_ids), slave_node, master, ",".join(slaves),
            )  # fmt: skip
            return VoidResult(not_present=tuple(key_ids))
        return await self.forwarder.voids.originate(assoc, key_ids, master, slaves, deadline)

    async def _relay(self, assoc: Association, keys: list[StoredKey]) -> None:
        try:
            await self.forwarder.originate(assoc, keys)
        except RelayFailure as exc:
            raise SupplyError(503, exc.message) from None

    # ---------------------------------------------------------------- buffer of keys ahead

    def schedule_refill(self, master: str, slave: str, slave_node: str) -> None:
        """Starts topping up (master, slave)'s buffer unless a refill is already running."""
        pair = (master, slave)
        task = self._refills.get(pair)
        if task is not None and not task.done():
            return
        self._refills[pair] = asyncio.create_task(
            self._refill(master, slave, slave_node), name=f"relay refill {master}->{slave}"
        )

    async def wait_refills(self) -> None:
        """Waits for running refills (tests, benchmarks, shutdown)."""
        tasks = [t for t in self._refills.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _refill(self, master: str, slave: str, slave_node: str) -> None:
        size = self.buffer_size_bits
        while True:
            try:
                assoc = await self.ensure(master, (slave,), slave_node, size)
            except SupplyError as exc:
                log.info("buffer %s→%s not refilled: %s", master, slave, exc.message)
                return
            # No await between this count and the return below: a take that happens meanwhile
            # finds this task done and starts a new one.
            missing = assoc.buffer - self.store.count_ready(master, slave)
            if missing <= 0:
                return
            batch = min(missing, self.config.settings.max_key_per_request)  # what a hop accepts
            keys = self.mint.keys(master, (slave,), batch, size)
            try:
                await self._relay(assoc, keys)
            except SupplyError as exc:
                log.warning("buffer %s→%s not refilled: %s", master, slave, exc.message)
                return
            self.store.add(keys, ready_for_master=True)

    async def close(self) -> None:
        for task in self._refills.values():
            task.cancel()
        for task in self._refills.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refills.clear()
