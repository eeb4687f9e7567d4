"""The pure parts of ETSI 020 hand-offs: km.yaml's interdomain section, body checks, routes,
and the journal's idempotence (SQLite in a temporary folder, no sockets)."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from common.config import ConfigError
from km import config as km_config
from km.interdomain.core import Route, WireError, parse_hand_off, route_of, to_wire
from km.interdomain.journal import InState, Journal, OutState
from km.interdomain.wire import ExtKeys
from km.key_store import KeyStore, StoredKey
from tests.harness.interdomain import DomainPki, two_border_data


@pytest.fixture
def data(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return two_border_data(tmp_path, DomainPki(tmp_path / "pki"))


def parse(tmp_path: Path, data: dict[str, Any]) -> km_config.KmConfig:
    return km_config.parse(data, tmp_path / "km.yaml")


def test_the_interdomain_section_is_read_with_its_peers(
    tmp_path: Path, data: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    config = parse(tmp_path, data[0])
    assert config.interdomain is not None
    assert config.interdomain.domain == "A"
    (peer,) = config.interdomain.peers
    assert (peer.domain, peer.kme_id, peer.saes) == ("B", "b_a", ("app-b",))
    assert config.interdomain.peer_for("app-b") is peer
    assert config.interdomain.peer_for("app-a") is None
    assert config.interdomain.trusted_cas[0].name == "ca.pem"
    assert config.interdomain.ack_timeout_s == 3.0


def test_a_km_without_the_section_is_no_border(
    tmp_path: Path, data: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    plain = {k: v for k, v in data[0].items() if k != "interdomain"}
    assert parse(tmp_path, plain).interdomain is None


def test_every_bad_interdomain_field_is_named(
    tmp_path: Path, data: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    bad = dict(data[0])
    bad["interdomain"] = {
        "domain": "A",
        "listen": "nowhere",
        "trusted_cas": ["missing-ca.pem"],
        "peers": [
            {"domain": "A", "kme_id": "a_b", "url": "http://x/kmapi/v1", "saes": ["s"]},
            {"domain": "B", "kme_id": "b_a", "url": "https://x/kmapi/v1", "saes": ["s"]},
        ],
        "ack_timeout_s": 0,
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, bad)
    text = str(info.value)
    for where in (
        "interdomain.listen",
        "interdomain.trusted_cas[0]: no such file",
        "interdomain.peers[0].domain",
        "interdomain.peers[0].kme_id",
        "interdomain.peers[0].url",
        "interdomain.peers[1].saes: s is reached through a_b already",
        "interdomain.ack_timeout_s",
        "interdomain.colour: unknown field",
    ):
        assert where in text


def _body(**change: Any) -> ExtKeys:
    raw: dict[str, Any] = {
        "keys": [
            {"key_id": str(uuid.uuid4()), "value": base64.b64encode(os.urandom(32)).decode()}
            for _ in range(2)
        ],
        "initiator_sae_id": "app-a",
        "target_sae_ids": ["app-b"],
        "ack_callback_url": "https://127.0.0.1:1/kmapi/v1/ext_keys/ack",
        "extension_optional": [{"expires_at": 2e9}],
    }
    raw.update(change)
    return ExtKeys.model_validate(raw)


def test_a_hand_off_round_trips_through_the_wire_and_hides_its_values() -> None:
    hand_off = parse_hand_off(_body())
    assert hand_off.size_bits == 256 and hand_off.keys[0].expires_at == 2e9
    again = parse_hand_off(ExtKeys.model_validate(to_wire(hand_off.keys, hand_off.callback)))
    assert again.keys == hand_off.keys
    for key in hand_off.keys:
        assert base64.b64encode(key.material).decode() not in repr(hand_off)
        assert base64.b64encode(key.material).decode() not in repr(_body())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ack_callback_url": "ftp://x"}, "ack_callback_url"),
        ({"target_sae_ids": ["b", "b"]}, "target_sae_ids"),
        ({"keys": [{"key_id": "X", "value": "AAAA"}]}, "keys[0].key_id"),
        ({"keys": [{"key_id": str(uuid.UUID(int=1)), "value": ""}]}, "keys[0].value"),
        (
            {
                "keys": [
                    {"key_id": str(uuid.UUID(int=1)), "value": "AAAA"},
                    {"key_id": str(uuid.UUID(int=1)), "value": "AAAA"},
                ]
            },
            "keys[1].key_id",
        ),
        (
            {
                "keys": [
                    {"key_id": str(uuid.UUID(int=1)), "value": "AAAA"},
                    {"key_id": str(uuid.UUID(int=2)), "value": "AAAAAAAA"},
                ]
            },
            "keys[1].value",
        ),
        ({"extension_optional": [{"expires_at": "soon"}]}, "extension_optional[0].expires_at"),
    ],
)
def test_a_bad_hand_off_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_hand_off(_body(**change))
    assert info.value.field == field


def test_routes_store_here_relay_on_or_hand_off_again(
    tmp_path: Path, data: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    config = parse(tmp_path, data[1])  # b_a: app-a is A's, app-b is served here
    assert config.interdomain is not None
    apps = {"app-b": "b_a", "app-c": "b_c"}
    assert route_of("app-b", "b_a", apps, config.interdomain) == (Route.STORE, "b_a")
    assert route_of("app-c", "b_a", apps, config.interdomain) == (Route.RELAY, "b_c")
    assert route_of("app-a", "b_a", apps, config.interdomain) == (Route.HAND_OFF, "a_b")
    with pytest.raises(WireError, match="not reached through b_a"):
        route_of("app-z", "b_a", apps, config.interdomain)


def test_the_journal_takes_a_retry_once_and_refuses_another_value(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    hand_off = parse_hand_off(_body())
    ids = list(hand_off.key_ids)
    assert journal.receive(hand_off, "a_b", 1.0).new == tuple(ids)
    assert journal.receive(hand_off, "a_b", 2.0).duplicates == tuple(ids)
    other = StoredKey(ids[0], os.urandom(32), 256, "app-a", ("app-b",), None)
    forged = parse_hand_off(ExtKeys.model_validate(to_wire([other], hand_off.callback)))
    with pytest.raises(WireError, match="another value"):
        journal.receive(forged, "a_b", 3.0)
    with pytest.raises(WireError):  # the same key from another peer
        journal.receive(hand_off, "a_x", 3.0)
    (pending,) = journal.to_forward()
    assert pending.keys == hand_off.keys
    assert journal.settle(ids, InState.RELAYED) == ids
    assert journal.to_forward() == []  # the values are gone once forwarded
    assert journal.receive(hand_off, "a_b", 4.0).duplicates == tuple(ids)  # digest still knows
    assert [r.key_id for r in journal.unacked()] == ids
    journal.mark_acked(ids, InState.RELAYED)
    assert journal.unacked() == []
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")
    assert reopened.counts() == {"incoming.relayed": 2}
    reopened.close()
    raw = (tmp_path / "j.sqlite").read_bytes()
    for key in hand_off.keys:
        assert key.material not in raw


def test_outgoing_states_only_move_forward_where_asked(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    keys = parse_hand_off(_body()).keys
    ids = [k.key_id for k in keys]
    journal.sent(keys, "b_a", 1.0)
    journal.sent(keys, "b_a", 2.0)  # a retry changes nothing
    assert journal.counts() == {"outgoing.sent": 2}
    assert journal.set_outgoing(ids, OutState.VOIDING, only_from=[OutState.SENT]) == ids
    assert journal.set_outgoing(ids, OutState.RELAYED, only_from=[OutState.SENT]) == []
    assert journal.voids_owed() == {"b_a": ids}
    journal.close()


def test_the_key_store_finds_and_discards_unclaimed_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = list(parse_hand_off(_body()).keys)
    store.add(keys, ready_for_master=False)
    assert store.lookup([k.key_id for k in keys]) == {k.key_id: k for k in keys}
    store.claim("app-b", "app-a", [keys[0].key_id])
    assert list(store.lookup([k.key_id for k in keys])) == [keys[1].key_id]
    assert store.discard([k.key_id for k in keys] + [str(uuid.uuid4())]) == 1
    assert store.lookup([k.key_id for k in keys]) == {} and len(store) == 0
    store.close()


def test_the_journal_forgets_only_settled_rows_older_than_asked(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    old, new = parse_hand_off(_body()), parse_hand_off(_body())
    journal.receive(old, "a_b", 100.0)
    journal.receive(new, "a_b", 200.0)
    ids = list(old.key_ids)
    journal.settle(ids[:1], InState.RELAYED)
    journal.mark_acked(ids[:1], InState.RELAYED)
    journal.sent(new.keys, "b_a", 100.0)
    journal.set_outgoing([new.keys[0].key_id], OutState.VOIDED)
    assert journal.purge(150.0) == 2  # one acked incoming, one voided outgoing
    assert journal.counts() == {
        "incoming.received": 3,  # the other old key is still to be forwarded
        "outgoing.sent": 1,
    }
    journal.close()
