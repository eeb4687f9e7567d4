"""The SKIP core without sockets: request parsing, keyId forms, refusals as values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from km.access import AccessControl, AccessPolicy
from km.key_store import KeyStore
from km.skip.core import (
    Capabilities,
    Entropy,
    KeyById,
    NewKey,
    SkipError,
    SkipService,
    parse_key_id,
    parse_request,
    skip_key_id,
)
from km.supply import KeySupply

SAES = {"a": "n1", "b": "n1", "d": "n2"}


def test_each_resource_parses_to_its_request() -> None:
    assert parse_request("GET", "/capabilities", b"") == Capabilities()
    assert parse_request("GET", "/entropy", b"minentropy=512") == Entropy(512)
    assert parse_request("GET", "/key", b"remoteSystemID=b&size=128") == NewKey("b", 128)
    assert parse_request("GET", "/key", b"remoteSystemID=r%201") == NewKey("r 1", None)
    assert parse_request("GET", "/key/" + "AB" * 16, b"remoteSystemID=a") == KeyById(
        "abababab-abab-abab-abab-abababababab", "a"
    )


def test_a_key_id_reads_in_hex_and_uuid_forms_and_round_trips() -> None:
    key_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    assert skip_key_id(key_id) == "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"
    assert parse_key_id(skip_key_id(key_id)) == key_id
    assert parse_key_id(key_id.upper()) == key_id


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("POST", "/key", b"remoteSystemID=b", 405),
        ("GET", "/nothing", b"", 404),
        ("GET", "/key/a/b", b"", 404),
        ("GET", "/capabilities", b"x=1", 400),
        ("GET", "/key", b"remoteSystemID=b&remoteSystemID=c", 400),
        ("GET", "/key", b"remoteSystemID", 400),
        ("GET", "/key", b"remoteSystemID=b&size=1e3", 400),
        ("GET", "/key", b"remoteSystemID=%ff\xff", 400),
        ("GET", "/key/123", b"remoteSystemID=b", 400),
    ],
)
def test_malformed_requests_are_refused_with_a_status(
    method: str, path: str, query: bytes, status: int
) -> None:
    with pytest.raises(SkipError) as caught:
        parse_request(method, path, query)
    assert caught.value.status == status


@given(st.sampled_from(["/key", "/entropy", "/capabilities", "/key/x"]), st.binary(max_size=80))
def test_any_query_parses_or_is_a_skip_error(path: str, query: bytes) -> None:
    try:
        parse_request("GET", path, query)
    except SkipError as error:
        assert error.status in (400, 404)


def test_a_key_response_never_shows_the_key_in_its_repr(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    supply = KeySupply("n1", SAES, store, None)
    service = SkipService(supply, AccessControl(AccessPolicy.allow_all(SAES)))
    response = asyncio.run(service.respond("a", "GET", "/key", b"remoteSystemID=b"))
    assert response.status == 200
    key = str(response.json()["key"])  # type: ignore[index]
    assert key not in repr(response) and key not in str(response)
    store.close()


def test_a_refused_request_takes_no_key_and_a_remote_node_without_relay_is_503(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    supply = KeySupply("n1", SAES, store, None)
    policy = AccessPolicy.from_dict(
        {"saes": {"a": {"peers": ["d"]}, "b": {"peers": "*"}, "d": {"peers": "*"}}}
    )
    service = SkipService(supply, AccessControl(policy))
    denied = asyncio.run(service.respond("a", "GET", "/key", b"remoteSystemID=b"))
    no_relay = asyncio.run(service.respond("a", "GET", "/key", b"remoteSystemID=d"))
    assert denied.status == 403
    assert no_relay.status == 503
    assert len(store) == 0
    store.close()
