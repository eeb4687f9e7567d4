"""The relay logic of one key manager: originate, check, re-seal and forward, or store.

A batch of end-to-end keys travels hop by hop along an admitted path. Each KM accepts a hop
only if its node's running configuration has the forwarding entry for it (the VIRT link with
`virt_prev_hop` == sender, backing an admitted app for the same master and slaves), opens it
with the link key it shares with the sender, and either re-seals it for the next hop or, at
the end of the path, stores the keys for the slaves. The answer travels back synchronously,
so the source learns that the far end stored the keys before it hands them to the master.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.protos import relay_pb2 as pb
from common.tracing import Tracer
from km.associations import Association, Associations
from km.config import KmConfig
from km.key_store import KeyStore, StoredKey
from km.link_pools import (
    LinkKeyError,
    LinkKeyNotSynced,
    LinkKeyPool,
    LinkKeyPools,
    LinkKeyTimeout,
    LinkKeyUnavailable,
)
from km.metrics import KmMetrics, NodeMetrics
from km.relay.client import RelayClient
from km.relay.errors import FailureKind, RelayFailure
from km.relay.hop_crypto import (
    HopAuthError,
    HopHeader,
    RelayMode,
    link_key_bytes_needed,
    open_sealed,
    seal,
    split_materials,
)
from km.relay.link_sync import LinkSync
from km.relay.voids import RelayVoids, VoidResult

log = logging.getLogger(__name__)

# Time kept back at each hop so that a downstream error reaches the caller before its deadline.
HOP_MARGIN_S = 0.05
# Tries of one hop: when the next KM cannot match the link-key index (it restarted, or its
# module expired keys before it fetched them), the two KMs resynchronise and the hop is
# retried once.
MAX_HOP_ATTEMPTS = 2
# The largest `relay/buffer` a hop carries in one refill batch.
MAX_BUFFER = 1024


@dataclass(frozen=True)
class RelayTimeouts:
    link_key_s: float = 2.0  # wait for a link key at one hop
    per_hop_s: float = 2.5  # share of the end-to-end deadline per hop
    # The controller commits node by node: a hop may arrive before this node's KM has seen
    # its forwarding entry. Wait this long for it before refusing.
    entry_s: float = 1.0
    connect_s: float = 1.0  # for a channel to the next KM that is not connected


DEFAULT_TIMEOUTS = RelayTimeouts()


@dataclass(frozen=True, repr=False)
class Batch:
    """End-to-end keys travelling together: one size, one master, one set of slaves."""

    key_ids: tuple[str, ...]
    size_bits: int
    master: str
    slaves: tuple[str, ...]
    expires_at: float | None
    payload: bytes  # the materials, concatenated

    def __repr__(self) -> str:
        return f"Batch(key_ids={self.key_ids!r}, size_bits={self.size_bits}, payload=<hidden>)"

    @staticmethod
    def of(keys: Sequence[StoredKey]) -> Batch:
        if not keys:
            raise ValueError("nothing to relay")
        first = keys[0]
        same = (first.size_bits, first.master, first.slaves, first.expires_at)
        if any((k.size_bits, k.master, k.slaves, k.expires_at) != same for k in keys):
            raise ValueError("a relayed batch needs keys of one size, master, slaves and expiry")
        return Batch(
            tuple(k.key_id for k in keys),
            first.size_bits,
            first.master,
            first.slaves,
            first.expires_at,
            b"".join(k.material for k in keys),
        )

    @staticmethod
    def received(header: HopHeader, payload: bytes) -> Batch:
        return Batch(
            header.key_ids,
            header.size_bits,
            header.master,
            header.slaves,
            header.expires_at,
            payload,
        )


class KeyHandOff(Protocol):
    """The end of this domain's segment toward SAEs of another domain (km/interdomain/):
    keys for them are handed to the peer domain's KM instead of being stored here."""

    def reaches(self, slaves: Sequence[str]) -> bool: ...

    async def hand_off(self, keys: Sequence[StoredKey], deadline: float) -> None:
        """Returns once the peer acknowledged the keys relayed; RelayFailure otherwise."""
        ...

    @property
    def ack_timeout_s(self) -> float: ...

    async def void_handed(self, key_ids: Sequence[str], deadline: float) -> VoidResult:
        """Voids keys this KM handed to the peer domain (a void relayed to the segment's end);
        RelayFailure when the peer gives no final answer before `deadline`."""
        ...


class Forwarder:
    def __init__(
        self,
        config: KmConfig,
        store: KeyStore,
        pools: LinkKeyPools,
        associations: Associations,
        client: RelayClient,
        *,
        timeouts: RelayTimeouts = DEFAULT_TIMEOUTS,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.node = node = config.node
        self.qkdn_id = config.qkdn_id
        self.store = store
        self.pools = pools
        self.associations = associations
        self.client = client
        self.timeouts = timeouts
        self.tracer = tracer or Tracer(f"km:{node}", None)
        self.link_sync = LinkSync(node, self.qkdn_id, pools, client, self.name_of, self.tracer)
        self.metrics: NodeMetrics = KmMetrics.off().for_node(node)  # set by km/main.py
        self.hand_offs: KeyHandOff | None = None  # set by km/main.py on a border KM
        self.voids = RelayVoids(self)  # takes relayed keys back along their path

    def name_of(self, qkdn_id: str) -> str:
        return self.config.name_of(qkdn_id)

    # ---------------------------------------------------------------- source

    async def originate(self, assoc: Association, keys: Sequence[StoredKey]) -> None:
        """Relays `keys` (one size, master, slave set and expiry) to the end of the path.

        Returns once the last KM stored them; raises RelayFailure naming the failed hop.
        """
        if assoc.next_hop is None or assoc.virt_link_id is None:
            raise RelayFailure(
                FailureKind.REFUSED,
                f"association {assoc.app_id} has no next hop at {self.node}",
            )
        batch = Batch.of(keys)
        hops = max(len(assoc.path) - 1, 1)
        started = time.monotonic()
        deadline = started + hops * self.timeouts.per_hop_s
        if self.hand_offs is not None and self.hand_offs.reaches(assoc.slaves):
            deadline += self.hand_offs.ack_timeout_s  # the far end hands off to another domain
        slaves = ",".join(assoc.slaves)
        try:
            ack = await self._send(assoc, 1, batch, deadline)
            if assoc.path and ack.stored_at != assoc.path[-1]:
                raise RelayFailure(
                    FailureKind.UNAVAILABLE,
                    f"keys of association {assoc.app_id} stored at {self.name_of(ack.stored_at)},"
                    f" not at {self.name_of(assoc.path[-1])}",
                )
        except RelayFailure:
            self.metrics.relay_failed(assoc.master, slaves)
            raise
        self.metrics.relayed(assoc.master, slaves, len(keys), hops, time.monotonic() - started)
        self.tracer.emit("relay.done", hops=ack.hops, key_ids=list(batch.key_ids))

    # ---------------------------------------------------------------- every other node

    async def receive(self, msg: pb.RelayHop, peer_cn: str, deadline: float) -> pb.RelayAck:
        """Handles one incoming hop; raises RelayFailure (nothing stored) when it must refuse."""
        sender_name = self.name_of(msg.sender)
        where = f"hop {sender_name}→{self.node}"
        try:
            header = HopHeader(
                mode=RelayMode.parse(msg.mode),
                virt_link_id=msg.virt_link_id,
                hop=msg.hop,
                sender=msg.sender,
                receiver=msg.receiver,
                link_key_indices=tuple(msg.link_key_indices),
                key_ids=tuple(msg.key_ids),
                size_bits=msg.size_bits,
                master=msg.master,
                slaves=tuple(msg.slaves),
                expires_at=msg.expires_at if msg.HasField("expires_at") else None,
            )
        except ValueError as exc:
            raise RelayFailure(FailureKind.BAD_REQUEST, f"{where}: {exc}") from None
        self._check_size(header, where)
        self._check_peer(header, peer_cn, where)
        entry = await self._entry(header, deadline, where)
        pool = self._pool(sender_name, where)
        wait = self._wait(deadline, where)
        try:
            link_key = await pool.take_indices(header.link_key_indices, wait)
        except LinkKeyTimeout:
            raise RelayFailure(
                FailureKind.UNAVAILABLE,
                f"{where}: {self.node} got no link key at index"
                f" {header.link_key_indices[0]} within {wait:.3g} s",
            ) from None
        except LinkKeyUnavailable as exc:
            if exc.frontier is not None:
                raise RelayFailure(
                    FailureKind.LINK_KEYS_GONE, f"{where}: {exc}", exc.frontier
                ) from None
            raise RelayFailure(FailureKind.TAMPERED, f"{where}: {exc}") from None
        self._trace_used(pool, header.link_key_indices, "receiver")
        try:
            payload = open_sealed(header, link_key, msg.sealed)
        except (HopAuthError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, HopAuthError) else str(exc)
            raise RelayFailure(FailureKind.TAMPERED, f"{where}: {reason}") from None
        self.tracer.emit(
            "relay.hop.received", hop=header.hop, sender=sender_name, key_ids=list(header.key_ids)
        )
        if entry.next_hop is None:
            if self.hand_offs is not None and self.hand_offs.reaches(header.slaves):
                return await self._hand_off(header, payload, deadline, entry)
            return self._store(header, payload, where, entry)
        return await self._send(entry, header.hop + 1, Batch.received(header, payload), deadline)

    def _check_size(self, header: HopHeader, where: str) -> None:
        """Bounds from the KM's settings: a hop never carries more than one request's keys
        (or a buffer refill), so nothing larger needs to be opened or fetched for."""
        settings = self.config.settings
        most_keys = max(settings.max_key_per_request, settings.e2e_buffer, MAX_BUFFER)
        if header.size_bits > settings.max_key_size_bits or len(header.key_ids) > most_keys:
            raise RelayFailure(
                FailureKind.BAD_REQUEST,
                f"{where}: {len(header.key_ids)} keys of {header.size_bits} bits exceed the"
                f" limits ({most_keys} keys, {settings.max_key_size_bits} bits)",
            )
        for key_id in header.key_ids:
            if not _is_canonical_uuid(key_id):
                raise RelayFailure(
                    FailureKind.BAD_REQUEST, f"{where}: key_ID {key_id!r} is not a lower-case UUID"
                )
        budget = link_key_bytes_needed(header.mode, header.payload_bytes)
        if len(header.link_key_indices) > budget:  # an index holds at least one byte
            raise RelayFailure(
                FailureKind.BAD_REQUEST, f"{where}: more link-key indices than the hop needs"
            )

    def _check_peer(self, header: HopHeader, peer_cn: str, where: str) -> None:
        if header.receiver != self.qkdn_id:
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: addressed to {self.name_of(header.receiver)}"
            )
        if peer_cn != self.name_of(header.sender):
            raise RelayFailure(
                FailureKind.REFUSED,
                f"{where}: the TLS peer {peer_cn!r} may not send as {self.name_of(header.sender)}",
            )

    async def _entry(self, header: HopHeader, deadline: float, where: str) -> Association:
        """The forwarding entry for this hop, checked against the hop's header."""
        entry = await self.forwarding_entry(header.virt_link_id, header.sender, deadline, where)
        self.check_entry(
            entry, header.virt_link_id, header.master, header.slaves, header.hop, where, header.mode
        )
        return entry

    async def forwarding_entry(
        self, virt_link_id: str, sender: str, deadline: float, where: str
    ) -> Association:
        """The forwarding entry of `virt_link_id` for keys from `sender`, waiting briefly for
        a configuration still on its way (REFUSED when none comes in time)."""
        give_up = min(time.monotonic() + self.timeouts.entry_s, deadline - HOP_MARGIN_S)
        while True:
            entry = self.associations.view.forwarding_entry(virt_link_id, sender)
            if entry is not None:
                return entry
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                raise RelayFailure(
                    FailureKind.REFUSED,
                    f"{where}: no forwarding entry for virtual link {virt_link_id}"
                    f" from {self.name_of(sender)}",
                )
            await self.associations.wait_for_change(remaining)

    def check_entry(
        self,
        entry: Association,
        virt_link_id: str,
        master: str,
        slaves: tuple[str, ...],
        hop: int,
        where: str,
        mode: RelayMode | None = None,
    ) -> None:
        """REFUSED unless `entry` carries master→slaves keys with this node at place `hop` of
        its path (and, given `mode`, in that relay mode)."""
        if not entry.serves(master, slaves):
            raise RelayFailure(
                FailureKind.REFUSED,
                f"{where}: virtual link {virt_link_id} does not carry keys"
                f" {master}→{','.join(slaves)}",
            )
        if mode is not None and entry.mode is not mode:
            raise RelayFailure(
                FailureKind.REFUSED,
                f"{where}: relay mode {mode.value}, configured {entry.mode.value}",
            )
        if entry.path and (hop >= len(entry.path) or entry.path[hop] != self.qkdn_id):
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: hop number {hop} does not match the path"
            )

    def _keys(self, header: HopHeader, payload: bytes, entry: Association) -> list[StoredKey]:
        """The keys of a hop, with their origin (relayed over QKD) and the key mode this
        node's tree gives the association (kept across a restart of this KM)."""
        mode = None if entry.key_mode is None else entry.key_mode.value
        return [
            StoredKey(
                key_id=key_id,
                material=material,
                size_bits=header.size_bits,
                master=header.master,
                slaves=header.slaves,
                expires_at=header.expires_at,
                origin="qkd",
                key_mode=mode,
            )
            for key_id, material in zip(
                header.key_ids, split_materials(header, payload), strict=True
            )
        ]

    async def _hand_off(
        self, header: HopHeader, payload: bytes, deadline: float, entry: Association
    ) -> pb.RelayAck:
        """The end of this domain's segment: the keys go on to the next domain (ETSI 020)."""
        assert self.hand_offs is not None
        keys = self._keys(header, payload, entry)
        await self.hand_offs.hand_off(keys, deadline - HOP_MARGIN_S)
        self.tracer.emit("relay.handed_off", hops=header.hop, key_ids=list(header.key_ids))
        return pb.RelayAck(stored_at=self.qkdn_id, hops=header.hop)

    def _store(
        self, header: HopHeader, payload: bytes, where: str, entry: Association
    ) -> pb.RelayAck:
        keys = self._keys(header, payload, entry)
        try:
            self.store.add(keys, ready_for_master=False)
        except ValueError as exc:  # a key_ID stored already: a replayed or duplicated batch
            # ... unless every key is held already with the identical value: a border KM of
            # another domain resuming a hand-off after a restart relays the same keys again.
            if not self._held_identically(keys):
                raise RelayFailure(FailureKind.TAMPERED, f"{where}: {exc}") from None
        self.tracer.emit("relay.stored", hops=header.hop, key_ids=list(header.key_ids))
        return pb.RelayAck(stored_at=self.qkdn_id, hops=header.hop)

    def _held_identically(self, keys: Sequence[StoredKey]) -> bool:
        held = self.store.lookup([k.key_id for k in keys])
        if len(held) != len(keys):
            return False
        same = True
        for key in keys:  # compare every key (constant time each), then decide
            old = held[key.key_id]
            same &= hmac.compare_digest(old.material, key.material)
            same &= (old.master, old.slaves) == (key.master, key.slaves)
        return same

    # ---------------------------------------------------------------- sending one hop

    async def _send(
        self, assoc: Association, hop: int, batch: Batch, deadline: float
    ) -> pb.RelayAck:
        """Seals the batch for the next hop; returns the ack from the end of the path.

        If the next KM cannot match the link-key index (it restarted, or its module expired
        that part of the stream before it fetched it), the two resynchronise (SyncLink) and
        the hop is tried once more with fresh indices.
        """
        assert assoc.next_hop is not None
        next_name = self.name_of(assoc.next_hop)
        where = f"hop {self.node}→{next_name}"
        pool = self._pool(next_name, where)
        for attempt in range(1, MAX_HOP_ATTEMPTS + 1):
            try:
                return await self._send_once(assoc, hop, batch, deadline, pool, where)
            except RelayFailure as exc:
                if exc.frontier is None:
                    raise
                if attempt == MAX_HOP_ATTEMPTS:
                    raise RelayFailure(FailureKind.TAMPERED, exc.message) from None
                log.info("%s: peer cannot match the link-key index; resynchronising", where)
                remaining = deadline - time.monotonic() - HOP_MARGIN_S
                try:
                    await self.link_sync.sync(
                        pool, max(0.01, remaining), why="the peer refused an index"
                    )
                except RelayFailure as sync_failure:
                    raise RelayFailure(
                        FailureKind.UNAVAILABLE, f"{exc.message}; {sync_failure.message}"
                    ) from None
        raise AssertionError("unreachable")

    async def _send_once(
        self,
        assoc: Association,
        hop: int,
        batch: Batch,
        deadline: float,
        pool: LinkKeyPool,
        where: str,
    ) -> pb.RelayAck:
        assert assoc.next_hop is not None and assoc.virt_link_id is not None
        wait = self._wait(deadline, where)
        needed = link_key_bytes_needed(assoc.mode, len(batch.payload))
        try:
            indices, link_key = await pool.take_bytes_for_sending(needed, wait)
        except LinkKeyNotSynced:
            raise RelayFailure(
                FailureKind.UNAVAILABLE,
                f"{where}: no link key within {wait:.3g} s (not yet resynchronised with"
                f" {pool.link.peer_node})",
            ) from None
        except LinkKeyTimeout:
            raise RelayFailure(
                FailureKind.UNAVAILABLE, f"{where}: no link key within {wait:.3g} s"
            ) from None
        header = HopHeader(
            mode=assoc.mode,
            virt_link_id=assoc.virt_link_id,
            hop=hop,
            sender=self.qkdn_id,
            receiver=assoc.next_hop,
            link_key_indices=tuple(indices),
            key_ids=batch.key_ids,
            size_bits=batch.size_bits,
            master=batch.master,
            slaves=batch.slaves,
            expires_at=batch.expires_at,
        )
        msg = pb.RelayHop(
            virt_link_id=header.virt_link_id,
            hop=hop,
            sender=header.sender,
            receiver=header.receiver,
            mode=header.mode.value,
            link_key_indices=list(indices),
            sealed=seal(header, link_key, batch.payload),
            key_ids=list(batch.key_ids),
            size_bits=batch.size_bits,
            master=batch.master,
            slaves=list(batch.slaves),
        )
        if batch.expires_at is not None:
            msg.expires_at = batch.expires_at
        self._trace_used(pool, indices, "sender")
        self.tracer.emit(
            "relay.link_key",
            hop=hop,
            sender=self.node,
            receiver=self.name_of(assoc.next_hop),
            link_key_indices=list(indices),
            key_ids=list(batch.key_ids),
        )
        remaining = deadline - time.monotonic() - HOP_MARGIN_S
        if remaining <= 0:
            raise RelayFailure(FailureKind.UNAVAILABLE, f"{where}: no time left for this hop")
        return await self.client.forward(
            self.name_of(assoc.next_hop), msg, remaining, where, self.timeouts.connect_s
        )

    def _trace_used(self, pool: LinkKeyPool, indices: Sequence[int], role: str) -> None:
        """One `link_key.used` event per index (names and indices only, never material)."""
        for index in indices:
            self.tracer.emit(
                "link_key.used",
                qkdl_id=pool.link.qkdl_id,
                index=index,
                role=role,
                peer=pool.link.peer_node,
            )

    def _pool(self, peer: str, where: str) -> LinkKeyPool:
        try:
            return self.pools.for_peer(peer)
        except LinkKeyError:
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: no PHYS link between {self.node} and {peer}"
            ) from None

    def _wait(self, deadline: float, where: str) -> float:
        remaining = deadline - time.monotonic() - HOP_MARGIN_S
        if remaining <= 0:
            raise RelayFailure(FailureKind.UNAVAILABLE, f"{where}: no time left for this hop")
        return min(self.timeouts.link_key_s, remaining)


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
