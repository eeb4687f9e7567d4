"""Sealing end-to-end keys for one hop of the trusted-node relay (pure: no I/O, no clock).

A hop carries a batch of end-to-end keys (their materials concatenated) from one key manager
to the next, protected with link key material that only those two nodes share.

- `aes-gcm`: AES-256-GCM keyed by 32 bytes of fresh link key; random 96-bit nonce in front.
  Each link key index is used for one message only, so the nonce never repeats under a key.
- `otp`: one-time pad (XOR with as many fresh link-key bytes as the payload), authenticated
  by a Poly1305 one-time MAC (Wegman–Carter style) keyed by 32 further fresh link-key bytes.
  A Poly1305 key used once gives an information-theoretic forgery bound of about
  8·⌈L/16⌉ / 2^106 for an L-byte message, so OTP mode does not fall back on a computational
  assumption for integrity either.

Both modes authenticate the `HopHeader` as associated data: key IDs, virtual link, hop number,
sender and receiver node ids, link-key indices, master, slaves, size and expiry. A changed
ciphertext, a message replayed on another hop or link, or a different link key all fail with
`HopAuthError`, whose message says which hop; it never contains key material.
"""

from __future__ import annotations

import enum
import hmac
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.poly1305 import Poly1305

AES_KEY_BYTES = 32
NONCE_BYTES = 12
GCM_TAG_BYTES = 16
OTP_MAC_KEY_BYTES = 32
OTP_TAG_BYTES = 16
_AD_LABEL = b"qkdsdn-relay-hop-v1"


class RelayMode(enum.Enum):
    AES_GCM = "aes-gcm"
    OTP = "otp"

    @staticmethod
    def parse(text: str) -> RelayMode:
        try:
            return RelayMode(text)
        except ValueError:
            raise ValueError(f"unknown relay mode {text!r} (expected aes-gcm or otp)") from None


@dataclass(frozen=True)
class HopHeader:
    """What a hop says about itself; all of it is authenticated, none of it is secret."""

    mode: RelayMode
    virt_link_id: str
    hop: int  # 1 for source → second node, 2 for the next hop, ...
    sender: str  # qkdn_id of the sending node
    receiver: str  # qkdn_id of the receiving node
    link_key_indices: tuple[int, ...]
    key_ids: tuple[str, ...]
    size_bits: int  # of each end-to-end key
    master: str
    slaves: tuple[str, ...]
    expires_at: float | None

    def __post_init__(self) -> None:
        problems = _header_problems(self)
        if problems:
            raise ValueError(f"invalid relay hop header: {'; '.join(problems)}")

    @property
    def payload_bytes(self) -> int:
        return len(self.key_ids) * self.size_bits // 8

    def where(self) -> str:
        return (
            f"hop {self.hop} ({self.sender}→{self.receiver}, virtual link {self.virt_link_id},"
            f" link-key indices {list(self.link_key_indices)})"
        )

    def associated_data(self) -> bytes:
        parts: list[bytes] = [
            _AD_LABEL,
            self.mode.value.encode(),
            self.virt_link_id.encode(),
            struct.pack(">Q", self.hop),
            self.sender.encode(),
            self.receiver.encode(),
            b"".join(struct.pack(">Q", i) for i in self.link_key_indices),
            _encode_list(self.key_ids),
            struct.pack(">Q", self.size_bits),
            self.master.encode(),
            _encode_list(self.slaves),
            b"" if self.expires_at is None else struct.pack(">d", self.expires_at),
        ]
        return _encode_list_bytes(parts)


class HopAuthError(Exception):
    """A sealed hop failed to open: tampered, replayed elsewhere, or the wrong link key."""

    def __init__(self, header: HopHeader, reason: str) -> None:
        super().__init__(f"{header.where()}: {reason}")
        self.header = header
        self.reason = reason


def link_key_bytes_needed(mode: RelayMode, payload_bytes: int) -> int:
    """Fresh link-key bytes one hop consumes for a payload of `payload_bytes`."""
    if mode is RelayMode.AES_GCM:
        return AES_KEY_BYTES
    return payload_bytes + OTP_MAC_KEY_BYTES


def link_key_chunks_needed(mode: RelayMode, payload_bytes: int, chunk_bytes: int) -> int:
    """Link-key indices (of `chunk_bytes` each) one hop consumes."""
    return math.ceil(link_key_bytes_needed(mode, payload_bytes) / chunk_bytes)


def seal(
    header: HopHeader, link_key: bytes, payload: bytes, *, nonce: bytes | None = None
) -> bytes:
    """Encrypts and authenticates `payload` (the batch's key materials) for this hop."""
    if len(payload) != header.payload_bytes:
        raise ValueError(
            f"{header.where()}: payload has {len(payload)} bytes, header announces"
            f" {header.payload_bytes}"
        )
    _check_link_key(header, link_key)
    ad = header.associated_data()
    if header.mode is RelayMode.AES_GCM:
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        if len(nonce) != NONCE_BYTES:
            raise ValueError("AES-GCM nonce must be 12 bytes")
        return nonce + AESGCM(link_key[:AES_KEY_BYTES]).encrypt(nonce, payload, ad)
    pad, mac_key = _otp_split(link_key, len(payload))
    ciphertext = _xor(payload, pad)
    return ciphertext + _poly1305(mac_key, ad, ciphertext)


def open_sealed(header: HopHeader, link_key: bytes, sealed: bytes) -> bytes:
    """Checks and decrypts a sealed hop; raises HopAuthError naming the hop on any mismatch."""
    _check_link_key(header, link_key)
    ad = header.associated_data()
    if header.mode is RelayMode.AES_GCM:
        if len(sealed) != NONCE_BYTES + header.payload_bytes + GCM_TAG_BYTES:
            raise HopAuthError(header, "sealed payload has the wrong length")
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return AESGCM(link_key[:AES_KEY_BYTES]).decrypt(nonce, body, ad)
        except InvalidTag:
            raise HopAuthError(
                header, "authentication failed (ciphertext, header or link key differ)"
            ) from None
    if len(sealed) != header.payload_bytes + OTP_TAG_BYTES:
        raise HopAuthError(header, "sealed payload has the wrong length")
    ciphertext, tag = sealed[:-OTP_TAG_BYTES], sealed[-OTP_TAG_BYTES:]
    pad, mac_key = _otp_split(link_key, len(ciphertext))
    if not hmac.compare_digest(_poly1305(mac_key, ad, ciphertext), tag):
        raise HopAuthError(header, "authentication failed (ciphertext, header or link key differ)")
    return _xor(ciphertext, pad)


def split_materials(header: HopHeader, payload: bytes) -> list[bytes]:
    """The batch's payload cut back into one material per key ID."""
    size = header.size_bits // 8
    return [payload[i * size : (i + 1) * size] for i in range(len(header.key_ids))]


def _check_link_key(header: HopHeader, link_key: bytes) -> None:
    needed = link_key_bytes_needed(header.mode, header.payload_bytes)
    if len(link_key) < needed:
        raise ValueError(f"{header.where()}: {len(link_key)} link-key bytes, {needed} needed")


def _otp_split(link_key: bytes, length: int) -> tuple[bytes, bytes]:
    return link_key[:length], link_key[length : length + OTP_MAC_KEY_BYTES]


def _poly1305(mac_key: bytes, ad: bytes, ciphertext: bytes) -> bytes:
    # Length-prefix the associated data so (ad, ciphertext) splits are unambiguous.
    return Poly1305.generate_tag(mac_key, struct.pack(">Q", len(ad)) + ad + ciphertext)


def _xor(data: bytes, pad: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(len(data), "big")


def _encode_list(items: Sequence[str]) -> bytes:
    return _encode_list_bytes([item.encode() for item in items])


def _encode_list_bytes(items: Sequence[bytes]) -> bytes:
    return struct.pack(">I", len(items)) + b"".join(struct.pack(">I", len(i)) + i for i in items)


def _header_problems(header: HopHeader) -> list[str]:
    problems = []
    if header.hop < 1:
        problems.append(f"hop must be >= 1, got {header.hop}")
    if not header.virt_link_id:
        problems.append("no virtual link id")
    if not header.sender or not header.receiver:
        problems.append("sender and receiver node ids are required")
    elif header.sender == header.receiver:
        problems.append("sender and receiver are the same node")
    if not header.link_key_indices:
        problems.append("no link-key index")
    elif any(i < 0 for i in header.link_key_indices):
        problems.append("negative link-key index")
    elif len(set(header.link_key_indices)) != len(header.link_key_indices):
        problems.append("a link-key index is listed twice")
    if not header.key_ids:
        problems.append("no key id")
    elif len(set(header.key_ids)) != len(header.key_ids):
        problems.append("a key id is listed twice")
    if header.size_bits <= 0 or header.size_bits % 8:
        problems.append(f"size_bits must be a positive multiple of 8, got {header.size_bits}")
    if not header.master or not header.slaves:
        problems.append("master and slave SAE ids are required")
    return problems
