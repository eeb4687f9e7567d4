"""ETSI GS QKD 020 hand-offs between two border KMs of two domains: real HTTPS, mutual TLS,
a CA per domain, real journals and key stores."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest

from common.audit import AuditLog
from common.config import ConfigError
from common.roles import Role
from km import config as km_config
from km.config import KmConfig
from km.interdomain.component import Interdomain, RelayKeys
from km.interdomain.journal import InState
from km.key_store import ClaimFailure, KeyClaimError, KeyStore, StoredKey
from km.relay.errors import RelayFailure
from lab.launcher import free_ports
from tests.harness.interdomain import (
    Border,
    DomainPki,
    border_config,
    peer_client,
    two_border_data,
    two_borders,
)
from tests.harness.relay import wait_until as _wait_until


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """tests.harness.relay.wait_until with a deadline for a machine shared with others."""
    await _wait_until(condition, timeout, what)


ROOT = Path(__file__).resolve().parents[2]


def keys_for(master: str, slave: str, number: int = 2, size_bits: int = 256) -> list[StoredKey]:
    return [
        StoredKey(str(uuid.uuid4()), os.urandom(size_bits // 8), size_bits, master, (slave,), None)
        for _ in range(number)
    ]


class Pair:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pki = DomainPki(tmp / "pki")
        self.a_config, self.b_config = two_borders(tmp, self.pki)
        self.stores: dict[str, KeyStore] = {}
        self.kms: dict[str, Interdomain] = {}

    async def start(self, node: str, relay: RelayKeys | None = None) -> Interdomain:
        config = self.a_config if node == "a_b" else self.b_config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = self.stores[node] = KeyStore(config.data_dir / "keys.sqlite")
        km = self.kms[node] = Interdomain(config, store, relay=relay)
        await km.start()
        return km

    async def stop(self, node: str) -> None:
        await self.kms.pop(node).stop()
        self.stores.pop(node).close()

    async def close(self) -> None:
        for node in list(self.kms):
            await self.stop(node)

    def b_url(self) -> str:
        return self.kms["b_a"].url

    def as_a(self) -> httpx.Client:
        """A client with a_b's own certificate (what a_b's operator issued)."""
        return peer_client(self.pki, "A", "a_b", ["B"])


@contextlib.asynccontextmanager
async def pair(tmp: Path, *, start_a: bool = True) -> AsyncIterator[Pair]:
    p = Pair(tmp)
    try:
        await p.start("b_a")
        if start_a:
            await p.start("a_b")
        yield p
    finally:
        await p.close()


def body(keys: Sequence[StoredKey], callback: str) -> dict[str, object]:
    return {
        "keys": [
            {"key_id": k.key_id, "value": base64.b64encode(k.material).decode()} for k in keys
        ],
        "initiator_sae_id": keys[0].master,
        "target_sae_ids": list(keys[0].slaves),
        "ack_callback_url": callback,
    }


async def post(client: httpx.Client, url: str, data: object) -> httpx.Response:
    return await asyncio.to_thread(client.post, url, json=data)


def claim(store: KeyStore, slave: str, master: str, keys: Sequence[StoredKey]) -> list[bytes]:
    return [k.material for k in store.claim(slave, master, [k.key_id for k in keys])]


def test_a_hand_off_returns_once_the_peer_acked_relayed_and_the_keys_wait_there_once(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b")
            await p.kms["a_b"].hand_off(keys, time.monotonic() + 5)
            assert claim(p.stores["b_a"], "app-b", "app-a", keys) == [k.material for k in keys]
            with pytest.raises(KeyClaimError):
                claim(p.stores["b_a"], "app-b", "app-a", keys)
            assert p.kms["a_b"].journal.counts() == {"outgoing.relayed": 2}
            await wait_until(
                lambda: not p.kms["b_a"].journal.unacked(), what="b_a's ack marked delivered"
            )
            assert p.kms["b_a"].journal.counts() == {"incoming.relayed": 2}

    asyncio.run(run())


def test_a_retried_ext_keys_makes_no_second_key_and_is_acked_again(tmp_path: Path) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 3)
            sent = body(keys, p.kms["a_b"].callback_url)
            with p.as_a() as a:
                first = await post(a, p.b_url() + "/ext_keys", sent)
                assert first.status_code == 200, first.text
                assert first.json()["key_ids"] == [k.key_id for k in keys]
                await wait_until(lambda: p.kms["b_a"].journal.counts() == {"incoming.relayed": 3})
                again = await post(a, p.b_url() + "/ext_keys", sent)
            assert again.status_code == 200
            assert again.json() == {"key_ids": [], "duplicates": [k.key_id for k in keys]}
            assert len(p.stores["b_a"]) == 3
            assert claim(p.stores["b_a"], "app-b", "app-a", keys) == [k.material for k in keys]
            assert len(p.stores["b_a"]) == 0

    asyncio.run(run())


def test_the_same_key_id_with_another_value_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 1)
            with p.as_a() as a:
                assert (
                    await post(a, p.b_url() + "/ext_keys", body(keys, p.kms["a_b"].callback_url))
                ).status_code == 200
                forged = [StoredKey(keys[0].key_id, os.urandom(32), 256, "app-a", ("app-b",), None)]
                answer = await post(
                    a, p.b_url() + "/ext_keys", body(forged, p.kms["a_b"].callback_url)
                )
            assert answer.status_code == 400
            assert answer.json()["details"][0]["loc"] == "keys[0].key_id"
            await wait_until(lambda: len(p.stores["b_a"]) == 1)
            assert claim(p.stores["b_a"], "app-b", "app-a", keys) == [keys[0].material]

    asyncio.run(run())


def test_a_void_removes_the_key_on_the_other_side(tmp_path: Path) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 2)
            await p.kms["a_b"].hand_off(keys, time.monotonic() + 5)
            assert len(p.stores["b_a"]) == 2
            with p.as_a() as a:
                answer = await post(a, p.b_url() + "/ext_keys/void", {"key_ids": [keys[0].key_id]})
            assert answer.status_code == 200
            assert answer.json() == {
                "key_ids": [keys[0].key_id],
                "ack_status": "voided",
                "not_present": [],
                "failed": [],
            }
            assert len(p.stores["b_a"]) == 1
            with pytest.raises(KeyClaimError):
                claim(p.stores["b_a"], "app-b", "app-a", keys[:1])
            assert claim(p.stores["b_a"], "app-b", "app-a", keys[1:]) == [keys[1].material]
            states = p.kms["b_a"].journal.incoming([k.key_id for k in keys])
            assert states[keys[0].key_id].state is InState.VOIDED

    asyncio.run(run())


def test_an_unreachable_peer_fails_the_hand_off_naming_it_and_gets_the_owed_void_later(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        p = Pair(tmp_path)
        try:
            await p.start("a_b")
            # b_a is not running: the hand-off finds no peer within its deadline
            keys = keys_for("app-a", "app-b", 1)
            with pytest.raises(RelayFailure, match=r"hand-off a_b→b_a \(B\): no answer"):
                await p.kms["a_b"].hand_off(keys, time.monotonic() + 0.5)
            assert p.kms["a_b"].journal.counts() == {"outgoing.voiding": 1}
            await p.start("b_a")  # the owed void reaches it once it is up
            await wait_until(
                lambda: p.kms["a_b"].journal.counts() == {"outgoing.voided": 1},
                what="the owed void delivered",
            )
            assert len(p.stores["b_a"]) == 0
        finally:
            await p.close()

    asyncio.run(run())


def test_a_km_certificate_from_a_ca_not_allowed_is_refused(tmp_path: Path) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 1)
            # domain C's CA (not in b_a's trusted_cas) issues a certificate naming a_b
            with (
                peer_client(p.pki, "C", "a_b", ["B"]) as impostor,
                pytest.raises(httpx.TransportError),
            ):
                await post(impostor, p.b_url() + "/ext_keys", body(keys, p.kms["a_b"].callback_url))
            assert len(p.stores["b_a"]) == 0
            assert p.kms["b_a"].journal.counts() == {}

    asyncio.run(run())


def test_an_allowed_ca_naming_a_km_not_in_peers_is_401_audited_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            p.kms["b_a"].audit = AuditLog("km:b_a", tmp_path / "audit.jsonl")
            keys = keys_for("app-a", "app-b", 1)
            with peer_client(p.pki, "A", "a_x", ["B"]) as other:
                answer = await post(
                    other, p.b_url() + "/ext_keys", body(keys, p.kms["a_b"].callback_url)
                )
                malformed = await post(other, p.b_url() + "/ext_keys", {"keys": "nope"})
            with peer_client(p.pki, "A", "a_b", ["B"], Role.SAE) as sae:  # not a KM's
                as_sae = await post(
                    sae, p.b_url() + "/ext_keys", body(keys, p.kms["a_b"].callback_url)
                )
            assert as_sae.status_code == 401
            assert answer.status_code == 401
            assert "'a_x' is not an interdomain peer" in answer.json()["message"]
            assert malformed.status_code == 401  # a stranger learns nothing from a 400
            assert len(p.stores["b_a"]) == 0
            entries = [
                json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            ]
            assert entries[0]["who"] == "urn:qkdsdn:km:a_x"
            assert entries[0]["outcome"] == "refused"
            assert "ETSI 020 caller refused: urn:qkdsdn:km:a_x" in caplog.text

    with caplog.at_level(logging.INFO):
        asyncio.run(run())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"keys": []}, "keys"),
        ({"initiator_sae_id": None}, "initiator_sae_id"),
        ({"target_sae_ids": []}, "target_sae_ids"),
        ({"ack_callback_url": "http://127.0.0.1:1/ack"}, "ack_callback_url"),
        ({"ack_callback_url": "https://192.0.2.1:1/ack"}, "ack_callback_url"),
        ({"target_sae_ids": ["app-nowhere"]}, "target_sae_ids"),
        ({"keys": [{"key_id": "ABC", "value": "AAAA"}]}, "keys[0].key_id"),
        (
            {"keys": [{"key_id": "00000000-0000-4000-8000-000000000001", "value": "*"}]},
            "keys[0].value",
        ),
        ({"keys": [{"value": "AAAA"}]}, "keys.0.key_id"),
        ({"extension_mandatory": [{"x": 1}]}, "extension_mandatory"),
    ],
)
def test_a_malformed_ext_keys_is_400_naming_the_field(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            sent = body(keys_for("app-a", "app-b", 1), p.kms["a_b"].callback_url) | change
            with p.as_a() as a:
                answer = await post(a, p.b_url() + "/ext_keys", sent)
            assert answer.status_code == 400, answer.text
            assert field in [d["loc"] for d in answer.json()["details"]]
            assert field in answer.json()["message"]
            assert p.kms["b_a"].journal.counts() == {}
            assert len(p.stores["b_a"]) == 0

    asyncio.run(run())


def test_an_ack_or_void_naming_an_unknown_key_is_answered_key_not_present_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 1)
            await p.kms["a_b"].hand_off(keys, time.monotonic() + 5)
            unknown = str(uuid.uuid4())
            ack = {
                "key_ids": [unknown, keys[0].key_id],
                "ack_status": "failed",
                "initiator_sae_id": "app-a",
                "target_sae_id": "app-b",
            }
            # b_a acks to a_b: the known key is not taken back by a late "failed" either
            with peer_client(p.pki, "B", "b_a", ["A"]) as b:
                answer = await post(b, p.kms["a_b"].callback_url, ack)
                bad = await post(b, p.kms["a_b"].callback_url, ack | {"ack_status": "maybe"})
            assert answer.status_code == 200
            assert answer.json()["not_present"] == [unknown]
            assert bad.status_code == 400 and "ack_status" in bad.json()["message"]
            assert p.kms["a_b"].journal.counts() == {"outgoing.relayed": 1}
            with p.as_a() as a:
                void = await post(a, p.b_url() + "/ext_keys/void", {"key_ids": [unknown]})
            assert void.json() == {
                "key_ids": [],
                "ack_status": "voided",
                "not_present": [unknown],
                "failed": [],
            }
            assert len(p.stores["b_a"]) == 1

    asyncio.run(run())


def test_the_journal_survives_a_restart_and_resumes_the_keys_not_yet_relayed(
    tmp_path: Path,
) -> None:
    """b_a relays keys for app-c (reached through b_c in its domain): the first b_a never gets
    to relay them (stopped meanwhile); the restarted one relays exactly those keys and acks."""

    async def stuck(keys: Sequence[StoredKey], node: str) -> None:
        await asyncio.Event().wait()

    relayed: list[tuple[str, list[StoredKey]]] = []

    async def relay(keys: Sequence[StoredKey], node: str) -> None:
        relayed.append((node, list(keys)))

    async def run() -> None:
        p = Pair(tmp_path)
        p.b_config = _with_app(p.b_config, "app-c", "b_c")
        try:
            await p.start("b_a", stuck)
            keys = keys_for("app-a", "app-c", 2)
            # a_b is down: its callback cannot be reached until it is up again
            assert p.a_config.interdomain is not None
            a_listen = p.a_config.interdomain.listen
            callback = f"https://{a_listen}/kmapi/v1/ext_keys/ack"
            with p.as_a() as a:
                answer = await post(a, p.b_url() + "/ext_keys", body(keys, callback))
            assert answer.status_code == 200
            assert p.kms["b_a"].journal.counts() == {"incoming.received": 2}
            await p.stop("b_a")
            await p.start("b_a", relay)
            await wait_until(lambda: bool(relayed), what="the journaled keys relayed again")
            node, again = relayed[0]
            assert node == "b_c"
            assert [(k.key_id, k.material, k.slaves) for k in again] == [
                (k.key_id, k.material, ("app-c",)) for k in keys
            ]
            assert p.kms["b_a"].journal.counts() == {"incoming.relayed": 2}
            assert len(p.kms["b_a"].journal.unacked()) == 2  # the ack is still owed
            await p.start("a_b")  # the owed ack reaches it (a key it does not know: answered)
            await wait_until(lambda: not p.kms["b_a"].journal.unacked(), what="the owed ack")
            assert len(relayed) == 1
        finally:
            await p.close()

    asyncio.run(run())


def test_key_material_never_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = keys_for("app-a", "app-b", 3)

    async def run() -> None:
        async with pair(tmp_path) as p:
            await p.kms["a_b"].hand_off(keys, time.monotonic() + 5)
            with p.as_a() as a:
                await post(a, p.b_url() + "/ext_keys/void", {"key_ids": [keys[0].key_id]})
                forged = [StoredKey(keys[1].key_id, os.urandom(32), 256, "app-a", ("app-b",), None)]
                await post(a, p.b_url() + "/ext_keys", body(forged, p.kms["a_b"].callback_url))
            await wait_until(lambda: not p.kms["b_a"].journal.unacked())
            repr(p.kms["b_a"].journal.to_forward())

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    text = caplog.text
    assert "ext_keys from a_b" in text  # the logs were captured
    for key in keys:
        assert base64.b64encode(key.material).decode() not in text
        assert key.material.hex() not in text


def test_the_committed_openapi_document_matches_the_app(tmp_path: Path) -> None:
    async def run() -> None:
        async with pair(tmp_path, start_a=False) as p:
            with peer_client(p.pki, "A", "a_b", ["B"]) as a:
                served = (
                    await asyncio.to_thread(
                        a.get, p.b_url().removesuffix("/kmapi/v1") + "/openapi.json"
                    )
                ).json()
                versions = await asyncio.to_thread(
                    a.get, p.b_url().removesuffix("/v1") + "/versions"
                )
        assert versions.json() == {"versions": ["v1"]}
        committed = json.loads((ROOT / "docs" / "openapi-etsi020.json").read_text())
        assert served == committed
        assert set(served["paths"]) == {
            "/kmapi/versions",
            "/kmapi/v1/ext_keys",
            "/kmapi/v1/ext_keys/ack",
            "/kmapi/v1/ext_keys/void",
        }

    asyncio.run(run())


def _with_app(config: KmConfig, sae: str, node: str) -> KmConfig:
    return dataclasses.replace(config, applications={**config.applications, sae: node})


def _with_foreign(config: KmConfig, sae: str) -> KmConfig:
    assert config.interdomain is not None
    (peer,) = config.interdomain.peers
    peer = dataclasses.replace(peer, saes=(*peer.saes, sae))
    interdomain = dataclasses.replace(config.interdomain, peers=(peer,))
    return dataclasses.replace(
        config, interdomain=interdomain, applications={**config.applications, sae: config.node}
    )


def test_a_border_km_meeting_two_domains_hands_off_again_and_forwards_a_void(
    tmp_path: Path,
) -> None:
    """a_b (A) → b_a (B, also the border toward C) → c_b (C), which serves app-c: the ack
    comes back only once C stored the keys; a void from A reaches C through B."""
    pki = DomainPki(tmp_path / "pki")
    port_a, port_b, port_c = free_ports(3)

    def url(port: int) -> str:
        return f"https://127.0.0.1:{port}/kmapi/v1"

    borders = [
        Border("a_b", "A", port_a, {"app-a": "a_b", "app-c": "a_b"},
               [{"domain": "B", "kme_id": "b_a", "url": url(port_b), "saes": ["app-c"]}], ["B"]),
        Border("b_a", "B", port_b, {"app-a": "b_a", "app-c": "b_a"},
               [{"domain": "A", "kme_id": "a_b", "url": url(port_a), "saes": ["app-a"]},
                {"domain": "C", "kme_id": "c_b", "url": url(port_c), "saes": ["app-c"]}],
               ["A", "C"]),
        Border("c_b", "C", port_c, {"app-a": "c_b", "app-c": "c_b"},
               [{"domain": "B", "kme_id": "b_a", "url": url(port_b), "saes": ["app-a"]}], ["B"]),
    ]  # fmt: skip

    async def run() -> None:
        kms: dict[str, Interdomain] = {}
        stores: dict[str, KeyStore] = {}
        try:
            for border in borders:
                config = border_config(tmp_path, pki, border)
                stores[border.node] = KeyStore(tmp_path / f"{border.node}.sqlite")
                kms[border.node] = Interdomain(config, stores[border.node])
                await kms[border.node].start()
            keys = keys_for("app-a", "app-c", 2)
            await kms["a_b"].hand_off(keys, time.monotonic() + 5)
            # acknowledged: C holds them already, B and A keep nothing
            assert len(stores["c_b"]) == 2 and len(stores["b_a"]) == 0 and len(stores["a_b"]) == 0
            assert kms["b_a"].journal.counts() == {"incoming.relayed": 2, "outgoing.relayed": 2}
            with peer_client(pki, "A", "a_b", ["B"]) as a:
                answer = await post(
                    a, kms["b_a"].url + "/ext_keys/void", {"key_ids": [keys[0].key_id]}
                )
            assert answer.json()["key_ids"] == [keys[0].key_id]
            await wait_until(lambda: len(stores["c_b"]) == 1, what="the void forwarded to C")
            await wait_until(lambda: "outgoing.voiding" not in kms["b_a"].journal.counts())
            assert claim(stores["c_b"], "app-c", "app-a", keys[1:]) == [keys[1].material]
        finally:
            for km in kms.values():
                await km.stop()
            for store in stores.values():
                store.close()

    asyncio.run(run())


def test_a_peer_certificate_from_another_allowed_ca_is_refused_401_logged_and_audited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """b_a allows the CAs of A and C; a certificate naming a_b (A's KM) signed by C's CA
    passes the handshake but not the binding of a_b to A's CA."""
    pki = DomainPki(tmp_path / "pki")
    port_a, port_b = free_ports(2)
    b = Border(
        "b_a", "B", port_b, {"app-b": "b_a", "app-a": "b_a"},
        [{"domain": "A", "kme_id": "a_b", "url": f"https://127.0.0.1:{port_a}/kmapi/v1",
          "saes": ["app-a"]}],
        ["A", "C"],
    )  # fmt: skip

    async def run() -> None:
        config = border_config(tmp_path, pki, b)
        assert config.interdomain is not None
        assert config.interdomain.peers[0].ca == pki.ca_file("A").resolve()
        store = KeyStore(tmp_path / "b_a.sqlite")
        km = Interdomain(config, store, audit=AuditLog("km:b_a", tmp_path / "audit.jsonl"))
        await km.start()
        try:
            keys = keys_for("app-a", "app-b", 1)
            callback = f"https://127.0.0.1:{port_a}/kmapi/v1/ext_keys/ack"
            with peer_client(pki, "C", "a_b", ["B"]) as impostor:
                refused = await post(impostor, km.url + "/ext_keys", body(keys, callback))
                void = await post(impostor, km.url + "/ext_keys/void", {"key_ids": ["x"]})
            with peer_client(pki, "A", "a_b", ["B"]) as genuine:
                accepted = await post(genuine, km.url + "/ext_keys", body(keys, callback))
            assert refused.status_code == 401 and void.status_code == 401
            assert "not issued by its domain's CA" in refused.json()["message"]
            assert accepted.status_code == 200
            entries = [
                json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            ]
            assert [e["outcome"] for e in entries] == ["refused", "refused"]
            assert entries[0]["who"] == "urn:qkdsdn:km:a_b"
            assert "ETSI 020 caller refused: urn:qkdsdn:km:a_b" in caplog.text
        finally:
            await km.stop()
            store.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(run())


def test_a_peer_ca_file_that_does_not_exist_is_a_clear_error_at_start(tmp_path: Path) -> None:
    pki = DomainPki(tmp_path / "pki")
    a, _ = two_border_data(tmp_path, pki)
    a["interdomain"]["peers"][0]["ca"] = str(tmp_path / "nowhere" / "ca-B.pem")
    with pytest.raises(ConfigError, match=r"interdomain.peers\[0\].ca: no such file: .*ca-B.pem"):
        km_config.parse(a, tmp_path / "km-a_b.yaml")
    a["interdomain"]["peers"][0].pop("ca")
    a["interdomain"]["trusted_cas"] = [str(pki.ca_file("B")), str(pki.ca_file("C"))]
    with pytest.raises(ConfigError, match=r"interdomain.peers\[0\].ca: missing: the CA of"):
        km_config.parse(a, tmp_path / "km-a_b.yaml")


def test_a_void_of_a_key_claimed_at_the_border_answers_failed_and_a_retry_answers_the_same(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with pair(tmp_path) as p:
            keys = keys_for("app-a", "app-b", 2)
            await p.kms["a_b"].hand_off(keys, time.monotonic() + 5)
            assert claim(p.stores["b_a"], "app-b", "app-a", keys[:1]) == [keys[0].material]
            ids = [k.key_id for k in keys]
            with p.as_a() as a:
                first = await post(a, p.b_url() + "/ext_keys/void", {"key_ids": ids})
                again = await post(a, p.b_url() + "/ext_keys/void", {"key_ids": ids})
            expected = {
                "key_ids": [keys[1].key_id],
                "ack_status": "voided",
                "not_present": [],
                "failed": [keys[0].key_id],
            }
            assert first.json() == expected and again.json() == expected
            assert len(p.stores["b_a"]) == 0
            with pytest.raises(KeyClaimError) as info:  # as for a key_ID never issued
                claim(p.stores["b_a"], "app-b", "app-a", keys[1:])
            assert info.value.reason is ClaimFailure.UNKNOWN_KEY

    asyncio.run(run())
