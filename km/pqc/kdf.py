"""Key derivation of post-quantum and hybrid keys: HKDF-SHA-384 bound to the exchange transcript.

Why SHA-384 (not SHA3-256): it is the hash of NIST SP 800-56C rev. 2 and CNSA 2.0 key
derivation, HMAC-SHA-384 gives a 384-bit pseudorandom key and 192-bit collision resistance
over the transcript (more than the 256-bit keys it derives need, also against Grover), and
on a 64-bit CPU HMAC-SHA-384 is faster than HMAC-SHA3-256 (SHA-512 core, 128-byte blocks).

Domain separation (what arnika's bare HKDF(qkd‖pqc) lacks): every field is length-prefixed
and labelled, so no two different transcripts or keys encode to the same bytes.
- transcript hash T = SHA-384(encoding of label, KEM, H(encapsulation key), H(ciphertext),
  both KM node ids, master SAE, slave SAEs, key mode, origin, key size, every key_ID);
- PRK = HKDF-Extract(salt=T, IKM=ML-KEM shared secret);
- pqc key_i = HKDF-Expand(PRK, info=("pqc", key_ID_i, size), size/8);
- hybrid key_i = HKDF(salt=T, IKM=qkd key_i ‖ pqc key_i, info=("hybrid", key_ID_i, size)),
  which stays secret if either input does;
- key confirmation: HMAC-SHA-384(HKDF-Expand(PRK, "confirm"), T), returned by the peer
  that encapsulated, so a wrong ciphertext or key is found before any key is delivered.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

LABEL = b"qkdsdn key exchange v1"
HASH_NAME = "SHA-384"
_HASH = hashes.SHA384


def _field(value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def encode(*values: bytes | str) -> bytes:
    """Length-prefixed concatenation: injective over sequences of fields."""
    return b"".join(_field(v) for v in values)


@dataclass(frozen=True)
class Transcript:
    """What both ends agree on in one exchange; bound into every derived key."""

    kem: str
    encapsulation_key: bytes
    ciphertext: bytes
    initiator: str  # qkdn_id of the KM that generated the key pair (the master's KM)
    responder: str  # qkdn_id of the KM that encapsulated (the slaves' KM)
    master: str
    slaves: tuple[str, ...]
    mode: str  # key mode of the association (km.pqc.mode.KeyMode value)
    origin: str  # "pqc" or "hybrid"
    size_bits: int
    key_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"Transcript({self.kem}, {self.initiator}→{self.responder}, {self.master}→"
            f"{','.join(self.slaves)}, mode={self.mode}, origin={self.origin},"
            f" {len(self.key_ids)} key(s) of {self.size_bits} bits)"
        )

    def digest(self) -> bytes:
        return hashlib.sha384(
            encode(
                LABEL,
                self.kem,
                hashlib.sha384(self.encapsulation_key).digest(),
                hashlib.sha384(self.ciphertext).digest(),
                self.initiator,
                self.responder,
                self.master,
                encode(*self.slaves),
                self.mode,
                self.origin,
                str(self.size_bits),
                encode(*self.key_ids),
            )
        ).digest()


def extract(shared_secret: bytes, transcript_hash: bytes) -> bytes:
    """HKDF-Extract(salt=transcript hash, IKM=shared secret): the 48-byte PRK."""
    return hmac.new(transcript_hash, shared_secret, hashlib.sha384).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(_HASH(), length, info).derive(prk)


def pqc_keys(prk: bytes, key_ids: Sequence[str], size_bits: int) -> list[bytes]:
    """One key per key_ID from the exchange's PRK (many keys per encapsulation)."""
    return [_expand(prk, encode("pqc", k, str(size_bits)), size_bits // 8) for k in key_ids]


def hybrid_key(
    qkd_key: bytes, pqc_key: bytes, transcript_hash: bytes, key_id: str, size_bits: int
) -> bytes:
    """HKDF(salt=T, IKM=qkd‖pqc, info=("hybrid", key_ID, size)): secure if either input is."""
    if len(qkd_key) != size_bits // 8 or len(pqc_key) != size_bits // 8:
        raise ValueError(f"hybrid inputs must both be {size_bits} bits")
    return HKDF(
        _HASH(), size_bits // 8, transcript_hash, encode("hybrid", key_id, str(size_bits))
    ).derive(qkd_key + pqc_key)


def confirmation(prk: bytes, transcript_hash: bytes) -> bytes:
    """The key-confirmation tag the encapsulating KM returns."""
    key = _expand(prk, encode("confirm"), 48)
    return hmac.new(key, transcript_hash, hashlib.sha384).digest()


def tags_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
