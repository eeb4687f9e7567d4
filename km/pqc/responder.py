"""The slaves' side of an exchange: check the offer against this KM, derive, store, answer.

`Responder.answer` is the logic (no gRPC); `PqcServicer` adapts it to the `PqcExchange`
service on the KM's relay server, whose mutual TLS names the calling key manager.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from common.protos import pqc_pb2 as pb
from common.protos import pqc_pb2_grpc as pb_grpc
from km.config import KmConfig
from km.key_store import KeyClaimError, KeyStore, StoredKey
from km.pqc import exchange, wire
from km.pqc.exchange import ExchangeError, Offer
from km.pqc.mode import KeyMode, Origin
from km.pqc.origins import KeyOrigin, OriginBook
from km.relay.servicer import key_manager_peer

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Responder:
    def __init__(
        self,
        config: KmConfig,
        store: KeyStore,
        origins: OriginBook,
        clock: Callable[[], float] = time.time,
        mode_here: Callable[[str, Sequence[str]], KeyMode | None] = lambda *_: None,
    ) -> None:
        self.config = config
        self.store = store
        self.origins = origins
        self.clock = clock
        # The key mode this node's tree gives the association (None: not written here).
        self.mode_here = mode_here

    def _check(self, offer: Offer, caller: str) -> None:
        config = self.config
        try:
            caller_id = config.qkdn_id_of(caller)
        except KeyError:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED, f"unknown key manager {caller}"
            ) from None
        if offer.initiator != caller_id:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"key manager {caller} offers an exchange in the name of {offer.initiator}",
            )
        if offer.responder != config.qkdn_id:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"exchange for {offer.responder} sent to {config.node}",
            )
        if config.applications.get(offer.master) != caller:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"master SAE {offer.master!r} is not served by {caller}",
            )
        for slave in offer.slaves:
            if config.applications.get(slave) != config.node:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"slave SAE {slave!r} is not served here"
                )
            peer = config.interdomain.peer_for(slave) if config.interdomain else None
            if peer is not None:  # a border KM: the slave's own KM is in another domain
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"slave SAE {slave!r} is in domain {peer.domain}: a post-quantum key made"
                    f" at the border {config.node} could never reach it",
                )
        limits = config.settings
        if not limits.min_key_size_bits <= offer.size_bits <= limits.max_key_size_bits:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"key size {offer.size_bits} outside {limits.min_key_size_bits}.."
                f"{limits.max_key_size_bits} bits",
            )
        if offer.origin is Origin.HYBRID and len(offer.slaves) != 1:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "hybrid keys serve one slave SAE")
        # The node's tree, not the offer, says whether post-quantum keys are allowed here at
        # all: qkd-only (written by the controller from the master's registration) forbids
        # them. Any other mode in the tree may lag a policy change by one install: the offer's
        # mode (authenticated, bound into the transcript) is the one recorded.
        here = self.mode_here(offer.master, offer.slaves)
        if here is KeyMode.QKD_ONLY and offer.mode is not KeyMode.QKD_ONLY:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"key mode {offer.mode.value} offered for {offer.master}→"
                f"{','.join(offer.slaves)}, the tree of {config.node} says {here.value}",
            )

    def answer(self, offer: Offer, caller: str) -> exchange.Answer:
        """Derives and stores the keys; raises Refused (nothing stored) when it must refuse."""
        self._check(offer, caller)
        qkd: list[StoredKey] | None = None
        if offer.origin is Origin.HYBRID:
            qkd = self._claim_qkd(offer)
        try:
            answer, keys = exchange.respond(
                offer, None if qkd is None else [k.material for k in qkd]
            )
        except ExchangeError as exc:
            if qkd is not None:
                self.store.add(qkd, ready_for_master=False)  # put the QKD keys back untouched
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, exc.message) from None
        stored = [
            StoredKey(
                key_id,
                material,
                offer.size_bits,
                offer.master,
                offer.slaves,
                offer.expires_at,
                offer.origin.value,
                offer.mode.value,
            )
            for key_id, material in zip(offer.key_ids, keys, strict=True)
        ]
        self.store.add(stored, ready_for_master=False)
        self.origins.record(
            offer.key_ids, KeyOrigin(offer.origin, offer.mode), offer.expires_at, delivered=False
        )
        return answer

    def _claim_qkd(self, offer: Offer) -> list[StoredKey]:
        try:
            qkd = self.store.claim(offer.slaves[0], offer.master, offer.key_ids, now=self.clock())
        except KeyClaimError as exc:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION, f"no QKD key to combine: {exc}"
            ) from None
        if any(k.size_bits != offer.size_bits for k in qkd):
            self.store.add(qkd, ready_for_master=False)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "QKD keys of another size")
        return qkd


class PqcServicer:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    async def Establish(
        self, request: pb.KemOffer, context: grpc.aio.ServicerContext[pb.KemOffer, pb.KemAnswer]
    ) -> pb.KemAnswer:
        caller = await key_manager_peer(context)
        try:
            offer = wire.offer_of(request)
            answer = self.responder.answer(offer, caller)
        except ExchangeError as exc:
            log.info("post-quantum exchange from %s refused: %s", caller, exc.message)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            raise
        except Refused as exc:
            log.info("post-quantum exchange from %s refused: %s", caller, exc.message)
            await context.abort(exc.code, exc.message)
            raise
        return wire.answer_message(answer, self.responder.config.qkdn_id)


_ADD: Callable[[Any, grpc.aio.Server], None] = pb_grpc.add_PqcExchangeServicer_to_server


def add_to_server(server: grpc.aio.Server, responder: Responder) -> None:
    _ADD(PqcServicer(responder), server)
