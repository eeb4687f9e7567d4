"""ML-KEM and the HKDF-SHA-384 derivation: known answers, an independent HKDF, bad input."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from pathlib import Path

import pytest

from km.pqc import exchange, kdf
from km.pqc.exchange import Answer, ExchangeError
from km.pqc.kem import Kem, KemError, encapsulate, generate
from km.pqc.mode import KeyMode, Origin

VECTORS = json.loads((Path(__file__).parent.parent / "golden" / "pqc-kem-vectors.json").read_text())
KEY_IDS = ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
TRANSCRIPT = kdf.Transcript(
    "ML-KEM-768", bytes(1184), bytes(1088), "n1", "n3", "app1", ("app2",),
    "hybrid-either", "hybrid", 256, KEY_IDS,
)  # fmt: skip
T_HEX = (
    "13302dec29370db1814d912d704c377dbdf3ddd881fbc77ddf5d92d2c7d4a059"
    "f8cab09cb9731af1cfcfcf951fe3db37"
)


def _rfc5869(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA-384 written from RFC 5869 with the standard library only (an oracle)."""
    prk = hmac.new(salt, ikm, hashlib.sha384).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha384).digest()
        out += block
        counter += 1
    return out[:length]


@pytest.mark.parametrize("kem", list(Kem))
def test_ml_kem_known_answers_from_a_fixed_seed(kem: Kem) -> None:
    vector = VECTORS[kem.value]
    key = generate(kem, bytes.fromhex(vector["seed"]))
    assert hashlib.sha3_256(key.encapsulation_key).hexdigest() == vector["ek_sha3_256"]
    assert key.decapsulate(bytes.fromhex(vector["ciphertext"])).hex() == vector["shared_secret"]


@pytest.mark.parametrize("kem", list(Kem))
def test_encapsulation_and_decapsulation_agree_and_sizes_are_fips_203(kem: Kem) -> None:
    key = generate(kem)
    assert len(key.encapsulation_key) == kem.encapsulation_key_bytes
    secret, ciphertext = encapsulate(kem, key.encapsulation_key)
    assert len(ciphertext) == kem.ciphertext_bytes and len(secret) == 32
    assert key.decapsulate(ciphertext) == secret


def test_malformed_kem_inputs_are_refused_without_secrets() -> None:
    key = generate(Kem.ML_KEM_768)
    with pytest.raises(KemError, match="1088"):
        key.decapsulate(b"\x00" * 10)
    with pytest.raises(KemError, match="1184"):
        encapsulate(Kem.ML_KEM_768, b"\x01" * 100)
    with pytest.raises(KemError, match="unknown KEM"):
        Kem.parse("Kyber512")
    assert "hidden" in repr(key)


def test_transcript_hash_and_derived_keys_match_fixed_vectors() -> None:
    digest = TRANSCRIPT.digest()
    assert digest.hex() == T_HEX
    prk = kdf.extract(bytes(range(32)), digest)
    keys = kdf.pqc_keys(prk, KEY_IDS, 256)
    assert [k.hex() for k in keys] == [
        "b5156e020703c5b9ce2705889caf4c0878c6d471be6b58b63c29849b29711a0e",
        "bdc7bd7bffe2c8b933c8fd0b0b9ff42eaf4b6aea0186272e2315277d442d26fd",
    ]
    hybrid = kdf.hybrid_key(b"\xaa" * 32, keys[0], digest, KEY_IDS[0], 256)
    assert hybrid.hex() == "f5b61f6dab61631f8d9cb2e58bad07e854bd9a4c7c11e0f905e07f6c29764868"


def test_the_derivation_is_rfc_5869_hkdf_sha_384_with_labelled_info() -> None:
    digest = TRANSCRIPT.digest()
    secret = bytes(range(32))
    prk = kdf.extract(secret, digest)
    expected = _rfc5869(digest, secret, kdf.encode("pqc", KEY_IDS[1], "256"), 32)
    assert kdf.pqc_keys(prk, KEY_IDS, 256)[1] == expected
    qkd, pqc = b"\x11" * 64, b"\x22" * 64
    assert kdf.hybrid_key(qkd, pqc, digest, KEY_IDS[0], 512) == _rfc5869(
        digest, qkd + pqc, kdf.encode("hybrid", KEY_IDS[0], "512"), 64
    )


def test_every_transcript_field_changes_the_keys() -> None:
    base = TRANSCRIPT.digest()
    changed = [
        ("kem", "ML-KEM-1024"), ("encapsulation_key", b"\x01" + bytes(1183)),
        ("ciphertext", b"\x01" + bytes(1087)), ("initiator", "n2"), ("responder", "n2"),
        ("master", "app9"), ("slaves", ("app2", "app3")), ("mode", "pqc-only"),
        ("origin", "pqc"), ("size_bits", 512), ("key_ids", KEY_IDS[:1]),
    ]  # fmt: skip
    digests = {base}
    for name, value in changed:
        from dataclasses import replace

        digests.add(replace(TRANSCRIPT, **{name: value}).digest())  # type: ignore[arg-type]
    assert len(digests) == len(changed) + 1
    # length prefixes: moving a boundary between fields changes the encoding
    assert kdf.encode("ab", "c") != kdf.encode("a", "bc")


def _offer(origin: Origin = Origin.PQC, n: int = 3) -> tuple[object, exchange.Offer]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    return exchange.start(
        Kem.ML_KEM_768, "n1", "n3", "app1", ["app2"], KeyMode.PQC_ONLY, origin, 256, ids, None
    )


def test_one_encapsulation_gives_the_same_batch_of_keys_at_both_ends() -> None:
    private, offer = _offer(n=64)
    answer, theirs = exchange.respond(offer)
    ours = exchange.finish(private, offer, answer)  # type: ignore[arg-type]
    assert ours == theirs and len(set(ours)) == 64


def test_hybrid_keys_need_both_inputs_at_both_ends() -> None:
    private, offer = _offer(Origin.HYBRID, 2)
    qkd = [b"\x01" * 32, b"\x02" * 32]
    answer, theirs = exchange.respond(offer, qkd)
    assert exchange.finish(private, offer, answer, qkd) == theirs  # type: ignore[arg-type]
    wrong = exchange.finish(private, offer, answer, [b"\x03" * 32, b"\x02" * 32])  # type: ignore[arg-type]
    assert wrong[0] != theirs[0] and wrong[1] == theirs[1]
    with pytest.raises(ExchangeError, match="one QKD key per key_ID"):
        exchange.respond(offer, None)


def test_a_wrong_ciphertext_or_tag_fails_the_exchange_naming_the_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    private, offer = _offer()
    answer, keys = exchange.respond(offer)
    flipped = bytes([answer.ciphertext[0] ^ 1]) + answer.ciphertext[1:]
    for bad in (
        Answer(flipped, answer.confirmation),  # implicit rejection: another secret
        Answer(answer.ciphertext, bytes(48)),
        Answer(answer.ciphertext[:-1], answer.confirmation),
    ):
        with pytest.raises(ExchangeError, match="key manager qnode3") as info:
            exchange.finish(private, offer, bad, peer="qnode3")  # type: ignore[arg-type]
        text = str(info.value) + repr(info.value)
        assert all(k.hex() not in text for k in keys)
    assert all(k.hex() not in caplog.text for k in keys)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"key_ids": ()}, "key_ids"),
        ({"key_ids": ("not-a-uuid",)}, "canonical UUID"),
        ({"key_ids": (KEY_IDS[0], KEY_IDS[0])}, "duplicates"),
        ({"size_bits": 12}, "size_bits"),
        ({"slaves": ()}, "slaves"),
        ({"origin": Origin.QKD}, "origin"),
    ],
)
def test_a_bad_offer_is_refused_naming_the_field(change: dict[str, object], error: str) -> None:
    from dataclasses import replace

    _, offer = _offer()
    with pytest.raises(ExchangeError, match=error):
        exchange.respond(replace(offer, **change))  # type: ignore[arg-type]
