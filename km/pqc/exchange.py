"""Both halves of one ML-KEM exchange between end key managers, without I/O (pure given randomness).

The initiator (master's KM) makes an `Offer` with a fresh key pair; the responder (slaves' KM)
calls `respond`, which encapsulates and derives the keys; the initiator calls `finish` with the
answer, which checks the key confirmation before deriving the same keys. Nothing here logs or
puts a secret into an exception message.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from km.pqc import kdf
from km.pqc.kem import DecapsulationKey, Kem, KemError, encapsulate, generate
from km.pqc.mode import KeyMode, Origin

MAX_KEYS_PER_EXCHANGE = 1024


class ExchangeError(Exception):
    """The exchange failed; nothing may be delivered. `message` names the peer, never a key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Offer:
    kem: Kem
    encapsulation_key: bytes
    initiator: str
    responder: str
    master: str
    slaves: tuple[str, ...]
    mode: KeyMode
    origin: Origin
    size_bits: int
    key_ids: tuple[str, ...]
    expires_at: float | None

    def __repr__(self) -> str:
        return (
            f"Offer({self.kem.value}, {self.initiator}→{self.responder}, {self.master}→"
            f"{','.join(self.slaves)}, {self.mode.value}, {self.origin.value},"
            f" {len(self.key_ids)}x{self.size_bits} bits)"
        )

    def check(self) -> None:
        """Raises ExchangeError naming the first bad field."""
        if self.origin not in (Origin.PQC, Origin.HYBRID):
            raise ExchangeError(f"origin must be pqc or hybrid, not {self.origin.value}")
        if not self.key_ids or len(self.key_ids) > MAX_KEYS_PER_EXCHANGE:
            raise ExchangeError(f"key_ids: 1..{MAX_KEYS_PER_EXCHANGE} expected")
        if len(set(self.key_ids)) != len(self.key_ids):
            raise ExchangeError("key_ids: duplicates")
        for key_id in self.key_ids:
            try:
                if str(uuid.UUID(key_id)) != key_id:
                    raise ValueError
            except ValueError:
                raise ExchangeError(f"key_ids: {key_id!r} is not a canonical UUID") from None
        if self.size_bits <= 0 or self.size_bits % 8 or self.size_bits > 8192:
            raise ExchangeError(f"size_bits: {self.size_bits} is not a multiple of 8 in 8..8192")
        if not self.master or not self.slaves:
            raise ExchangeError("master and slaves are required")

    def transcript(self, ciphertext: bytes) -> kdf.Transcript:
        return kdf.Transcript(
            kem=self.kem.value,
            encapsulation_key=self.encapsulation_key,
            ciphertext=ciphertext,
            initiator=self.initiator,
            responder=self.responder,
            master=self.master,
            slaves=self.slaves,
            mode=self.mode.value,
            origin=self.origin.value,
            size_bits=self.size_bits,
            key_ids=self.key_ids,
        )


@dataclass(frozen=True, repr=False)
class Answer:
    ciphertext: bytes
    confirmation: bytes

    def __repr__(self) -> str:
        return f"Answer(ciphertext={len(self.ciphertext)} bytes)"


def start(
    kem: Kem,
    initiator: str,
    responder: str,
    master: str,
    slaves: Sequence[str],
    mode: KeyMode,
    origin: Origin,
    size_bits: int,
    key_ids: Sequence[str],
    expires_at: float | None,
) -> tuple[DecapsulationKey, Offer]:
    """A fresh key pair and the offer that carries its encapsulation key."""
    private = generate(kem)
    offer = Offer(
        kem, private.encapsulation_key, initiator, responder, master, tuple(slaves),
        mode, origin, size_bits, tuple(key_ids), expires_at,
    )  # fmt: skip
    offer.check()
    return private, offer


def _keys(offer: Offer, prk: bytes, digest: bytes, qkd_keys: Sequence[bytes] | None) -> list[bytes]:
    pqc = kdf.pqc_keys(prk, offer.key_ids, offer.size_bits)
    if offer.origin is Origin.PQC:
        return pqc
    if qkd_keys is None or len(qkd_keys) != len(pqc):
        raise ExchangeError("hybrid keys need one QKD key per key_ID")
    return [
        kdf.hybrid_key(q, p, digest, key_id, offer.size_bits)
        for q, p, key_id in zip(qkd_keys, pqc, offer.key_ids, strict=True)
    ]


def respond(offer: Offer, qkd_keys: Sequence[bytes] | None = None) -> tuple[Answer, list[bytes]]:
    """The responder's half: encapsulate, derive the keys (hybrid: with the QKD keys)."""
    offer.check()
    try:
        secret, ciphertext = encapsulate(offer.kem, offer.encapsulation_key)
    except KemError as exc:
        raise ExchangeError(str(exc)) from None
    digest = offer.transcript(ciphertext).digest()
    prk = kdf.extract(secret, digest)
    keys = _keys(offer, prk, digest, qkd_keys)
    return Answer(ciphertext, kdf.confirmation(prk, digest)), keys


def finish(
    private: DecapsulationKey,
    offer: Offer,
    answer: Answer,
    qkd_keys: Sequence[bytes] | None = None,
    peer: str = "peer",
) -> list[bytes]:
    """The initiator's half: decapsulate, check the confirmation, derive the same keys."""
    try:
        secret = private.decapsulate(answer.ciphertext)
    except KemError as exc:
        raise ExchangeError(f"key manager {peer}: {exc}") from None
    digest = offer.transcript(answer.ciphertext).digest()
    prk = kdf.extract(secret, digest)
    if not kdf.tags_equal(kdf.confirmation(prk, digest), answer.confirmation):
        raise ExchangeError(
            f"key manager {peer}: key confirmation failed (wrong ciphertext or key)"
        )
    return _keys(offer, prk, digest, qkd_keys)
