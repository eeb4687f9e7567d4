"""Hop crypto: round trips in both modes, and every kind of tampering is caught and located."""

from __future__ import annotations

import dataclasses
import random
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from km.relay.hop_crypto import (
    AES_KEY_BYTES,
    OTP_MAC_KEY_BYTES,
    HopAuthError,
    HopHeader,
    RelayMode,
    link_key_bytes_needed,
    link_key_chunks_needed,
    open_sealed,
    seal,
    split_materials,
)


def make_header(
    mode: RelayMode = RelayMode.AES_GCM, keys: int = 2, size_bits: int = 256
) -> HopHeader:
    return HopHeader(
        mode=mode,
        virt_link_id="virt-1",
        hop=1,
        sender="node-a",
        receiver="node-b",
        link_key_indices=(0, 2),
        key_ids=tuple(f"key-{i}" for i in range(keys)),
        size_bits=size_bits,
        master="app1",
        slaves=("app2",),
        expires_at=1_700_000_000.5,
    )


def link_key_for(header: HopHeader) -> bytes:
    return secrets.token_bytes(link_key_bytes_needed(header.mode, header.payload_bytes))


@pytest.mark.parametrize("mode", list(RelayMode))
def test_round_trip(mode: RelayMode) -> None:
    header = make_header(mode)
    payload = secrets.token_bytes(header.payload_bytes)
    link_key = link_key_for(header)
    sealed = seal(header, link_key, payload)
    assert payload not in sealed
    opened = open_sealed(header, link_key, sealed)
    assert opened == payload
    assert split_materials(header, opened) == [payload[:32], payload[32:]]


def test_link_key_budget() -> None:
    assert link_key_bytes_needed(RelayMode.AES_GCM, 1000) == AES_KEY_BYTES
    assert link_key_bytes_needed(RelayMode.OTP, 64) == 64 + OTP_MAC_KEY_BYTES
    assert link_key_chunks_needed(RelayMode.OTP, 64, 32) == 3
    assert link_key_chunks_needed(RelayMode.AES_GCM, 64, 32) == 1
    assert link_key_chunks_needed(RelayMode.AES_GCM, 64, 16) == 2


@pytest.mark.parametrize("mode", list(RelayMode))
def test_flipped_ciphertext_bit_is_detected_and_located(mode: RelayMode) -> None:
    header = make_header(mode)
    link_key = link_key_for(header)
    sealed = bytearray(seal(header, link_key, secrets.token_bytes(header.payload_bytes)))
    sealed[len(sealed) // 2] ^= 0x01
    with pytest.raises(HopAuthError) as info:
        open_sealed(header, link_key, bytes(sealed))
    assert "hop 1 (node-a→node-b" in str(info.value)
    assert "virt-1" in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        {"hop": 2},
        {"virt_link_id": "virt-2"},
        {"sender": "node-c"},
        {"receiver": "node-c"},
        {"link_key_indices": (0, 4)},
        {"key_ids": ("key-0", "key-x")},
        {"master": "app9"},
        {"slaves": ("app3",)},
        {"expires_at": None},
        {"mode": RelayMode.OTP},
    ],
)
def test_header_changes_are_detected(change: dict[str, object]) -> None:
    header = make_header()
    link_key = secrets.token_bytes(96)
    sealed = seal(header, link_key, secrets.token_bytes(header.payload_bytes))
    other = dataclasses.replace(header, **change)  # type: ignore[arg-type]
    with pytest.raises(HopAuthError):
        open_sealed(other, link_key, sealed)


@pytest.mark.parametrize("mode", list(RelayMode))
def test_wrong_link_key_is_detected(mode: RelayMode) -> None:
    header = make_header(mode)
    sealed = seal(header, link_key_for(header), secrets.token_bytes(header.payload_bytes))
    with pytest.raises(HopAuthError, match="authentication failed"):
        open_sealed(header, link_key_for(header), sealed)


@pytest.mark.parametrize("mode", list(RelayMode))
def test_truncated_payload_is_detected(mode: RelayMode) -> None:
    header = make_header(mode)
    link_key = link_key_for(header)
    sealed = seal(header, link_key, secrets.token_bytes(header.payload_bytes))
    with pytest.raises(HopAuthError, match="wrong length"):
        open_sealed(header, link_key, sealed[:-1])


def test_errors_never_contain_material() -> None:
    header = make_header(RelayMode.OTP)
    link_key = link_key_for(header)
    payload = secrets.token_bytes(header.payload_bytes)
    sealed = bytearray(seal(header, link_key, payload))
    sealed[0] ^= 0xFF
    with pytest.raises(HopAuthError) as info:
        open_sealed(header, link_key, bytes(sealed))
    text = str(info.value) + repr(info.value)
    for secret in (payload, link_key):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="hop must be >= 1"):
        dataclasses.replace(make_header(), hop=0)
    with pytest.raises(ValueError, match="multiple of 8"):
        dataclasses.replace(make_header(), size_bits=100)
    with pytest.raises(ValueError, match="listed twice"):
        dataclasses.replace(make_header(), link_key_indices=(2, 2))
    with pytest.raises(ValueError, match="same node"):
        dataclasses.replace(make_header(), receiver="node-a")
    header = make_header()
    with pytest.raises(ValueError, match="link-key bytes"):
        seal(header, b"\x00" * 16, secrets.token_bytes(header.payload_bytes))
    with pytest.raises(ValueError, match="payload has"):
        seal(header, secrets.token_bytes(32), b"short")
    with pytest.raises(ValueError, match="unknown relay mode"):
        RelayMode.parse("rot13")


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(list(RelayMode)),
    keys=st.integers(min_value=1, max_value=4),
    size_bytes=st.integers(min_value=1, max_value=64),
    data=st.data(),
)
def test_round_trip_and_any_single_bit_flip(
    mode: RelayMode, keys: int, size_bytes: int, data: st.DataObject
) -> None:
    header = make_header(mode, keys, size_bytes * 8)
    payload = data.draw(st.binary(min_size=header.payload_bytes, max_size=header.payload_bytes))
    # Link keys are uniformly random; a degenerate all-zero Poly1305 key (probability 2^-256)
    # authenticates nothing, so the key comes from a seeded PRNG rather than shrunk bytes.
    rng = random.Random(data.draw(st.integers(min_value=0, max_value=2**64)))
    extra = data.draw(st.integers(min_value=0, max_value=8))
    link_key = rng.randbytes(link_key_bytes_needed(mode, header.payload_bytes) + extra)
    sealed = seal(header, link_key, payload)
    assert open_sealed(header, link_key, sealed) == payload
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed) * 8 - 1))
    tampered = bytearray(sealed)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(HopAuthError):
        open_sealed(header, link_key, bytes(tampered))
