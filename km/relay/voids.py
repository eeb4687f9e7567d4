"""Voids along an association path: a KM takes back keys it relayed, hop by hop to the end KM.

The source (a border KM that relayed keys handed to it by another domain) sends `RelayVoid`
along the association that carried the keys; every KM on the way checks it as it checks a
relay hop (mutual TLS names the sender, its node's forwarding entry for the VIRT link and
that sender, for the same master and slaves, at the right hop) and passes it on. The end KM
removes the keys no slave SAE claimed yet (`KeyStore.void`: a key_ID voided is never stored
afterwards), or, when it is itself the border toward another domain, voids them there. The
answer, per key_ID (voided / delivered / not present), travels back along the path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.protos import relay_pb2 as pb
from common.tracing import Tracer
from km.associations import Association
from km.config import KmConfig
from km.key_store import KeyStore, VoidOutcome, key_id_value
from km.relay.client import RelayClient
from km.relay.errors import FailureKind, RelayFailure

HOP_MARGIN_S = 0.05


@dataclass(frozen=True)
class VoidResult:
    """What a void did at the end of the path, per key_ID."""

    voided: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()
    not_present: tuple[str, ...] = ()

    @staticmethod
    def of(outcomes: Mapping[str, VoidOutcome]) -> VoidResult:
        def having(outcome: VoidOutcome) -> tuple[str, ...]:
            return tuple(k for k, o in outcomes.items() if o is outcome)

        return VoidResult(
            having(VoidOutcome.VOIDED),
            having(VoidOutcome.DELIVERED),
            having(VoidOutcome.NOT_PRESENT),
        )

    @staticmethod
    def of_ack(ack: pb.RelayVoidAck) -> VoidResult:
        return VoidResult(tuple(ack.voided), tuple(ack.delivered), tuple(ack.not_present))

    def outcomes(self) -> dict[str, VoidOutcome]:
        found = {k: VoidOutcome.VOIDED for k in self.voided}
        found.update({k: VoidOutcome.DELIVERED for k in self.delivered})
        found.update({k: VoidOutcome.NOT_PRESENT for k in self.not_present})
        return found

    def ack(self, answered_at: str) -> pb.RelayVoidAck:
        return pb.RelayVoidAck(
            answered_at=answered_at,
            voided=list(self.voided),
            delivered=list(self.delivered),
            not_present=list(self.not_present),
        )


class _Timeouts(Protocol):
    @property
    def connect_s(self) -> float: ...


class _HandedVoids(Protocol):
    def reaches(self, slaves: Sequence[str]) -> bool: ...

    async def void_handed(self, key_ids: Sequence[str], deadline: float) -> VoidResult: ...


class VoidPath(Protocol):
    """What a void needs of the KM's forwarder (km/relay/forwarder.py is the one)."""

    @property
    def config(self) -> KmConfig: ...

    @property
    def node(self) -> str: ...

    @property
    def qkdn_id(self) -> str: ...

    @property
    def store(self) -> KeyStore: ...

    @property
    def client(self) -> RelayClient: ...

    @property
    def timeouts(self) -> _Timeouts: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def hand_offs(self) -> _HandedVoids | None: ...

    def name_of(self, qkdn_id: str) -> str: ...

    async def forwarding_entry(
        self, virt_link_id: str, sender: str, deadline: float, where: str
    ) -> Association: ...

    def check_entry(
        self,
        entry: Association,
        virt_link_id: str,
        master: str,
        slaves: tuple[str, ...],
        hop: int,
        where: str,
    ) -> None: ...


class RelayVoids:
    """The void side of one KM's forwarder (same store, forwarding entries, client, hand-offs)."""

    def __init__(self, forwarder: VoidPath) -> None:
        self.forwarder = forwarder

    async def originate(
        self,
        assoc: Association,
        key_ids: Sequence[str],
        master: str,
        slaves: Sequence[str],
        deadline: float,
    ) -> VoidResult:
        """Voids `key_ids` (relayed on `assoc` for master → slaves) at the end of its path.
        RelayFailure naming the hop when a KM on the way refuses or does not answer."""
        fwd = self.forwarder
        if assoc.next_hop is None or assoc.virt_link_id is None:
            raise RelayFailure(
                FailureKind.REFUSED, f"association {assoc.app_id} has no next hop at {fwd.node}"
            )
        fwd.tracer.emit("relay.void.sent", key_ids=list(key_ids))
        ack = await self._send(assoc, 1, key_ids, master, tuple(slaves), deadline)
        result = VoidResult.of_ack(ack)
        fwd.tracer.emit(
            "relay.void.done",
            voided=list(result.voided),
            delivered=list(result.delivered),
            not_present=list(result.not_present),
        )
        return result

    async def receive(self, msg: pb.RelayVoid, peer: str, deadline: float) -> pb.RelayVoidAck:
        """One incoming void: checked as a relay hop, then passed on or carried out here."""
        fwd = self.forwarder
        sender = fwd.name_of(msg.sender)
        where = f"void {sender}→{fwd.node}"
        key_ids = list(msg.key_ids)
        self._check(msg, key_ids, peer, sender, where)
        entry = await self._entry(msg, deadline, where)
        fwd.tracer.emit("relay.void.received", sender=sender, key_ids=key_ids)
        if entry.next_hop is not None:
            return await self._send(
                entry, msg.hop + 1, key_ids, msg.master, tuple(msg.slaves), deadline
            )
        hand_offs = fwd.hand_offs
        if hand_offs is not None and hand_offs.reaches(tuple(msg.slaves)):
            result = await hand_offs.void_handed(key_ids, deadline - HOP_MARGIN_S)
        else:
            result = VoidResult.of(fwd.store.void(key_ids, time.time()))
        fwd.tracer.emit(
            "relay.voided",
            voided=list(result.voided),
            delivered=list(result.delivered),
            not_present=list(result.not_present),
        )
        return result.ack(fwd.qkdn_id)

    def _check(
        self, msg: pb.RelayVoid, key_ids: Sequence[str], peer: str, sender: str, where: str
    ) -> None:
        fwd = self.forwarder
        if msg.receiver != fwd.qkdn_id:
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: addressed to {fwd.name_of(msg.receiver)}"
            )
        if peer != sender:
            raise RelayFailure(
                FailureKind.REFUSED, f"{where}: the TLS peer {peer!r} may not send as {sender}"
            )
        settings = fwd.config.settings
        most = max(settings.max_key_per_request, settings.e2e_buffer, 1024)
        if not key_ids or len(key_ids) > most or msg.hop < 1 or not msg.slaves:
            raise RelayFailure(
                FailureKind.BAD_REQUEST,
                f"{where}: {len(key_ids)} key_IDs (1 to {most}), hop {msg.hop}, and slaves needed",
            )
        for key_id in key_ids:
            if key_id_value(key_id) is None:
                raise RelayFailure(
                    FailureKind.BAD_REQUEST, f"{where}: key_ID {key_id!r} is not a lower-case UUID"
                )

    async def _entry(self, msg: pb.RelayVoid, deadline: float, where: str) -> Association:
        """The forwarding entry for this void (the one its keys were relayed by)."""
        fwd = self.forwarder
        entry = await fwd.forwarding_entry(msg.virt_link_id, msg.sender, deadline, where)
        fwd.check_entry(entry, msg.virt_link_id, msg.master, tuple(msg.slaves), msg.hop, where)
        return entry

    async def _send(
        self,
        assoc: Association,
        hop: int,
        key_ids: Sequence[str],
        master: str,
        slaves: tuple[str, ...],
        deadline: float,
    ) -> pb.RelayVoidAck:
        fwd = self.forwarder
        assert assoc.next_hop is not None and assoc.virt_link_id is not None
        next_name = fwd.name_of(assoc.next_hop)
        where = f"void {fwd.node}→{next_name}"
        remaining = deadline - time.monotonic() - HOP_MARGIN_S
        if remaining <= 0:
            raise RelayFailure(FailureKind.UNAVAILABLE, f"{where}: no time left for this hop")
        msg = pb.RelayVoid(
            virt_link_id=assoc.virt_link_id,
            hop=hop,
            sender=fwd.qkdn_id,
            receiver=assoc.next_hop,
            key_ids=list(key_ids),
            master=master,
            slaves=list(slaves),
        )
        return await fwd.client.void(next_name, msg, remaining, where, fwd.timeouts.connect_s)
