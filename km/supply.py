"""Where the keys of an `enc_keys` come from, and how `dec_keys` finds them.

- every slave SAE at this node: fresh keys from the mint (`km/minting.py`), stored for the
  slaves here;
- every slave at one other node: the remote supplier (the KM-to-KM relay, `km/relay/`),
  which draws keys relayed ahead or relays new ones, and stores them at the slaves' KM;
- multicast over several nodes: this KM draws the keys once and hands the *same* keys
  (key_ID and material) to the remote supplier for each other node, so every slave, wherever
  it is, gets the same key under the same key_ID.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from km.key_store import (
    ClaimFailure,
    KeyBatch,
    KeyClaimError,
    KeyStore,
    StoredKey,
    batches_of,
)
from km.minting import DEFAULT_KEY_TTL_S, KeyMint


class SupplyError(Exception):
    """A key request that cannot be served. `message` never contains key material.

    status_code is the ETSI 014 HTTP status to answer: 400 bad request, 401 unauthorized,
    503 no key available (or a server-side failure).
    """

    def __init__(self, status_code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        # Why, for the metrics (km/metrics.py REASONS); "" lets the status code say.
        self.reason = reason


class RemoteSupplier(Protocol):
    """Keys toward SAEs at another node; implemented by the relay (`km/relay/component.py`)."""

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
        """Returns `number` keys the master may have, already stored at `slave_node`'s KM for
        `slaves` (all at `slave_node`) to claim with dec_keys. Raises SupplyError.

        keys=None: the supplier chooses the keys (relayed ahead, or relayed now).
        keys given (multicast across nodes): relay exactly these keys — same key_ID, material,
        size and expiry — to `slave_node`'s KM, stored there for `slaves`; return them. The
        supplier must not store them at this KM (the caller does that for local slaves).
        """
        ...

    def ready_count(self, master: str, slave: str) -> int:
        """Keys relayed ahead for (master, slave) and not yet handed out."""
        ...


class ForeignSupplier(Protocol):
    """SAEs of other domains reached from this node by handing keys to a peer domain's KM
    (ETSI 020, `km/interdomain/`); the border KM's application map names this node for them."""

    def reaches(self, slaves: Sequence[str]) -> bool: ...

    async def supply_hand_off(self, keys: Sequence[StoredKey]) -> None:
        """Hands exactly `keys` on; returns once relayed on. Raises SupplyError."""
        ...


class KeySupply:
    """Composition of the key sources of one KM; the ETSI 014 and 004 front ends call it."""

    def __init__(
        self,
        node: str,
        sae_nodes: Mapping[str, str],
        store: KeyStore,
        remote: RemoteSupplier | None,
        *,
        key_ttl_s: float | None = DEFAULT_KEY_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.sae_nodes = dict(sae_nodes)
        self.store = store
        self.remote = remote
        self.key_ttl_s = key_ttl_s
        self.clock = clock
        self.mint = KeyMint(key_ttl_s, clock)
        self._commits = CommitGroup(store)
        self.foreign: ForeignSupplier | None = None  # set by km/main.py on a border KM

    def node_of(self, sae_id: str) -> str:
        try:
            return self.sae_nodes[sae_id]
        except KeyError:
            raise SupplyError(400, f"unknown SAE_ID {sae_id!r}") from None

    def local_saes(self) -> tuple[str, ...]:
        return tuple(sae for sae, node in self.sae_nodes.items() if node == self.node)

    async def enc_keys(
        self, master: str, slaves: Sequence[str], number: int, size_bits: int
    ) -> Sequence[StoredKey]:
        if self.node_of(master) != self.node:
            raise SupplyError(401, f"SAE {master!r} is not served by key manager {self.node!r}")
        if not slaves:
            raise SupplyError(400, "no slave SAE_ID")
        if number <= 0 or size_bits <= 0 or size_bits % 8:
            raise SupplyError(400, "number must be positive and size a positive multiple of 8")
        by_node: dict[str, list[str]] = {}
        for slave in dict.fromkeys(slaves):
            by_node.setdefault(self.node_of(slave), []).append(slave)
        remote_nodes = [n for n in by_node if n != self.node]
        if self._foreign(by_node.get(self.node, ())):
            keys = self.mint.keys(master, list(dict.fromkeys(slaves)), number, size_bits)
            await self.place_keys(keys)
            return keys
        if remote_nodes and self.remote is None:
            raise SupplyError(503, f"no key relay toward node(s) {', '.join(remote_nodes)}")
        if not remote_nodes:
            batch = self.mint.batch(master, by_node[self.node], number, size_bits)
            await self._commits.add(batch)
            return batch
        assert self.remote is not None
        if len(by_node) == 1:
            (node,) = remote_nodes
            return await self.remote.enc_keys(master, by_node[node], node, number, size_bits)
        keys = self.mint.keys(master, list(dict.fromkeys(slaves)), number, size_bits)
        await self.place_keys(keys)
        return keys

    async def place_keys(self, keys: Sequence[StoredKey]) -> None:
        """Stores keys this KM drew for their slaves, wherever each slave is: here (waiting
        for dec_keys) or at another node's KM (through the remote supplier, with the same
        key_ID and material). Used for multicast and by ETSI 004 streams across nodes.
        All keys must share master, size and slaves."""
        if not keys:
            return
        first = keys[0]
        if any(
            (k.master, k.slaves, k.size_bits) != (first.master, first.slaves, first.size_bits)
            for k in keys
        ):
            raise ValueError("place_keys needs keys of one master, size and set of slaves")
        by_node: dict[str, list[str]] = {}
        for slave in dict.fromkeys(first.slaves):
            by_node.setdefault(self.node_of(slave), []).append(slave)
        for node, node_slaves in by_node.items():
            if node == self.node:
                continue
            if self.remote is None:
                raise SupplyError(503, f"no key relay toward node {node}")
            copies = [replace(k, slaves=tuple(node_slaves)) for k in keys]
            await self.remote.enc_keys(
                first.master, node_slaves, node, len(copies), first.size_bits, keys=copies
            )
        if self.node in by_node:
            foreign = self._foreign(by_node[self.node])
            for group in self._foreign_groups(foreign):
                assert self.foreign is not None
                await self.foreign.supply_hand_off([replace(k, slaves=group) for k in keys])
            local = tuple(s for s in by_node[self.node] if s not in foreign)
            if local:
                self.store.add([replace(k, slaves=local) for k in keys], ready_for_master=False)

    def _foreign(self, slaves: Sequence[str]) -> list[str]:
        """The slaves among `slaves` that are SAEs of another domain (handed off from here)."""
        if self.foreign is None:
            return []
        return [s for s in slaves if self.foreign.reaches([s])]

    def _foreign_groups(self, foreign: Sequence[str]) -> list[tuple[str, ...]]:
        """Foreign slaves in hand-offs: all in one when one peer reaches them, else one each."""
        if not foreign:
            return []
        assert self.foreign is not None
        if self.foreign.reaches(foreign):
            return [tuple(foreign)]
        return [(s,) for s in foreign]

    def dec_keys(self, slave: str, master: str, key_ids: Sequence[str]) -> list[StoredKey]:
        if self.node_of(slave) != self.node:
            raise SupplyError(401, f"SAE {slave!r} is not served by key manager {self.node!r}")
        self.node_of(master)
        try:
            return self.store.claim(slave, master, key_ids, now=self.clock())
        except KeyClaimError as exc:
            status = 401 if exc.reason in _UNAUTHORIZED else 400
            raise SupplyError(status, str(exc)) from None

    def ready_count(self, master: str, slave: str) -> int | None:
        """Keys ready at once for enc_keys(master → slave); None: unlimited (local CSPRNG)."""
        if self.node_of(slave) == self.node:
            return None
        return 0 if self.remote is None else self.remote.ready_count(master, slave)


class CommitGroup:
    """Group commit: the keys of every request that reaches the store in the same turn of
    the event loop go into one transaction (one WAL write instead of one per request).
    Each caller returns only once its keys are committed."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._waiting: list[tuple[list[KeyBatch], asyncio.Future[None]]] = []

    async def add(self, keys: Sequence[StoredKey]) -> None:
        batches = batches_of(keys)  # checks key_IDs before anything is queued
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((batches, done))
        await done

    def _flush(self) -> None:
        group, self._waiting = self._waiting, []
        try:
            self.store.add_batches(
                [b for batches, _ in group for b in batches], ready_for_master=False
            )
        except ValueError:
            # one request's keys are refused: store the others alone, fail only that one
            for batches, done in group:
                try:
                    self.store.add_batches(batches, ready_for_master=False)
                except ValueError as exc:
                    _settle(done, exc)
                else:
                    _settle(done, None)
            return
        except Exception as exc:
            for _, done in group:
                _settle(done, exc)
            return
        for _, done in group:
            _settle(done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    # A caller cancelled meanwhile (client gone) has nothing to be told; its keys stay
    # stored and expire unclaimed, as after a crash between commit and answer.
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


# A key that exists but is someone else's: the caller is not allowed to have it.
_UNAUTHORIZED = frozenset({ClaimFailure.WRONG_MASTER, ClaimFailure.NOT_A_SLAVE})
