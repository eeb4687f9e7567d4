"""Conversions between the exchange's values and the `qkdsdn.pqc` protobuf messages."""

from __future__ import annotations

from common.protos import pqc_pb2 as pb
from km.pqc.exchange import Answer, ExchangeError, Offer
from km.pqc.kem import Kem, KemError
from km.pqc.mode import KeyMode, Origin


def offer_message(offer: Offer) -> pb.KemOffer:
    msg = pb.KemOffer(
        kem=offer.kem.value,
        encapsulation_key=offer.encapsulation_key,
        initiator=offer.initiator,
        responder=offer.responder,
        master=offer.master,
        slaves=list(offer.slaves),
        mode=offer.mode.value,
        origin=offer.origin.value,
        size_bits=offer.size_bits,
        key_ids=list(offer.key_ids),
    )
    if offer.expires_at is not None:
        msg.expires_at = offer.expires_at
    return msg


def offer_of(msg: pb.KemOffer) -> Offer:
    """The offer in `msg`; ExchangeError naming the bad field."""
    try:
        kem = Kem.parse(msg.kem)
        mode = KeyMode.parse(msg.mode)
        origin = Origin(msg.origin)
    except (KemError, ValueError) as exc:
        raise ExchangeError(str(exc)) from None
    offer = Offer(
        kem=kem,
        encapsulation_key=bytes(msg.encapsulation_key),
        initiator=msg.initiator,
        responder=msg.responder,
        master=msg.master,
        slaves=tuple(msg.slaves),
        mode=mode,
        origin=origin,
        size_bits=msg.size_bits,
        key_ids=tuple(msg.key_ids),
        expires_at=msg.expires_at if msg.HasField("expires_at") else None,
    )
    offer.check()
    return offer


def answer_message(answer: Answer, stored_at: str) -> pb.KemAnswer:
    return pb.KemAnswer(
        ciphertext=answer.ciphertext, confirmation=answer.confirmation, stored_at=stored_at
    )


def answer_of(msg: pb.KemAnswer) -> Answer:
    return Answer(bytes(msg.ciphertext), bytes(msg.confirmation))
