"""The master's side: post-quantum and hybrid keys toward an end KM, many keys per exchange.

One exchange derives a batch of keys (`batch` per encapsulation); the keys not handed out at
once wait in a buffer of this KM for later requests of the same pair, mode and size, and are
dropped (never delivered) once their exchange is older than the re-key interval. A background
task tops the buffer up after a request, as the relay does with its keys relayed ahead.
Hybrid keys combine QKD keys relayed to the slaves' KM (drawn from `qkd`) with the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from km.key_store import StoredKey
from km.minting import DEFAULT_KEY_TTL_S
from km.pqc import exchange, wire
from km.pqc.client import PeerFailure, PqcClient
from km.pqc.exchange import ExchangeError
from km.pqc.kem import Kem
from km.pqc.mode import KeyMode, Origin
from km.supply import RemoteSupplier, SupplyError

log = logging.getLogger(__name__)

EXCHANGE_TIMEOUT_S = 5.0
MAX_BATCH = exchange.MAX_KEYS_PER_EXCHANGE


class QkdSideFailed(Exception):
    """The QKD keys of a hybrid batch could not be had."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PqcSideFailed(Exception):
    """The exchange failed. `qkd_keys`: QKD keys already at both ends that the peer did not
    touch (hybrid-either may deliver them alone); None when nothing may be delivered."""

    def __init__(self, message: str, qkd_keys: list[StoredKey] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.qkd_keys = qkd_keys


@dataclass(frozen=True)
class PqcSettings:
    kem: Kem = Kem.ML_KEM_768
    batch: int = 32  # keys derived per encapsulation
    rekey_s: float = 120.0  # no key of an exchange older than this is handed out
    key_ttl_s: float | None = DEFAULT_KEY_TTL_S
    max_hybrid_batch: int = 128  # QKD keys one relay carries (settings.max_key_per_request)


BufferKey = tuple[str, tuple[str, ...], int, KeyMode, Origin]


class PqcProvider:
    def __init__(
        self,
        qkdn_id: str,
        qkdn_id_of: Callable[[str], str],
        client: PqcClient,
        qkd: RemoteSupplier,
        settings: PqcSettings = PqcSettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.qkdn_id = qkdn_id
        self.qkdn_id_of = qkdn_id_of
        self.client = client
        self.qkd = qkd
        self.settings = settings
        self.clock = clock
        self.exchanges = 0
        self._buffers: dict[BufferKey, deque[tuple[float, StoredKey]]] = {}
        self._refills: dict[BufferKey, asyncio.Task[None]] = {}

    async def keys(
        self,
        origin: Origin,
        mode: KeyMode,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
    ) -> list[StoredKey]:
        """`number` keys of `origin` (pqc or hybrid), stored at the slaves' KM.
        Raises QkdSideFailed or PqcSideFailed."""
        key: BufferKey = (master, tuple(slaves), size_bits, mode, origin)
        taken = self._take(key, number)
        need = number - len(taken)
        if need > 0:
            cap = self._cap(origin)
            more = await self._batch(
                key, slave_node, max(need, min(need + self.settings.batch, cap))
            )
            taken += [k for _, k in more[:need]]
            self._buffers.setdefault(key, deque()).extend(more[need:])
        self._schedule_refill(key, slave_node)
        return taken

    def prepare(
        self,
        origin: Origin,
        mode: KeyMode,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        size_bits: int,
    ) -> None:
        """Starts an exchange in the background for this pair unless keys are buffered."""
        self._schedule_refill((master, tuple(slaves), size_bits, mode, origin), slave_node)

    def _cap(self, origin: Origin) -> int:
        """Keys one exchange may derive: a hybrid batch is one relay of QKD keys."""
        return self.settings.max_hybrid_batch if origin is Origin.HYBRID else MAX_BATCH

    def buffered(self, master: str, slaves: Sequence[str], size_bits: int) -> int:
        return sum(
            len(buf) for (m, s, size, _, _), buf in self._buffers.items()
            if (m, s, size) == (master, tuple(slaves), size_bits)
        )  # fmt: skip

    def _take(self, key: BufferKey, number: int) -> list[StoredKey]:
        buf = self._buffers.get(key)
        if not buf:
            return []
        oldest = self.clock() - self.settings.rekey_s
        while buf and buf[0][0] < oldest:  # re-key interval passed: never handed out
            buf.popleft()
        taken: list[StoredKey] = []
        while buf and len(taken) < number:
            taken.append(buf.popleft()[1])
        return taken

    async def _batch(
        self, key: BufferKey, slave_node: str, number: int
    ) -> list[tuple[float, StoredKey]]:
        master, slaves, size_bits, mode, origin = key
        expires = (
            None if self.settings.key_ttl_s is None else self.clock() + self.settings.key_ttl_s
        )
        qkd: list[StoredKey] | None = None
        if origin is Origin.HYBRID:
            try:
                qkd = list(await self.qkd.enc_keys(master, slaves, slave_node, number, size_bits))
            except SupplyError as exc:
                raise QkdSideFailed(exc.message) from None
            key_ids: Sequence[str] = [k.key_id for k in qkd]
            expires = min((k.expires_at for k in qkd if k.expires_at is not None), default=expires)
        else:
            key_ids = [str(uuid.uuid4()) for _ in range(number)]
        try:
            responder = self.qkdn_id_of(slave_node)
        except KeyError:
            raise PqcSideFailed(f"unknown node {slave_node!r}", qkd) from None
        private, offer = exchange.start(
            self.settings.kem, self.qkdn_id, responder, master, slaves, mode, origin,
            size_bits, key_ids, expires,
        )  # fmt: skip
        try:
            reply = await self.client.establish(
                slave_node, wire.offer_message(offer), EXCHANGE_TIMEOUT_S
            )
        except PeerFailure as exc:
            raise PqcSideFailed(exc.message, qkd if exc.untouched else None) from None
        try:
            materials = exchange.finish(
                private,
                offer,
                wire.answer_of(reply),
                None if qkd is None else [k.material for k in qkd],
                peer=slave_node,
            )
        except ExchangeError as exc:
            raise PqcSideFailed(exc.message) from None
        self.exchanges += 1
        made = self.clock()
        return [
            (made, StoredKey(key_id, material, size_bits, master, slaves, expires))
            for key_id, material in zip(offer.key_ids, materials, strict=True)
        ]

    def _schedule_refill(self, key: BufferKey, slave_node: str) -> None:
        if len(self._buffers.get(key, ())) * 2 >= self.settings.batch:
            return
        task = self._refills.get(key)
        if task is not None and not task.done():
            return
        self._refills[key] = asyncio.create_task(self._refill(key, slave_node))

    async def _refill(self, key: BufferKey, slave_node: str) -> None:
        try:
            more = await self._batch(key, slave_node, min(self.settings.batch, self._cap(key[4])))
        except (QkdSideFailed, PqcSideFailed) as exc:
            log.info("post-quantum buffer %s→%s not refilled: %s", key[0], key[1], exc)
            return
        self._buffers.setdefault(key, deque()).extend(more)

    def drop(self, origin: Origin) -> None:
        """Forgets the buffered keys of `origin` (their slave copies expire unclaimed)."""
        for key in [k for k in self._buffers if k[4] is origin]:
            del self._buffers[key]

    async def wait_refills(self) -> None:
        tasks = [t for t in self._refills.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in self._refills.values():
            task.cancel()
        for task in self._refills.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refills.clear()
        await self.client.close()
