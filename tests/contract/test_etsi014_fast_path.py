"""The ETSI 014 fast paths: simple-form `GET enc_keys` answers exactly as the FastAPI route
would, and a response's writes leave the server together.

A query the fast path does not take (here: one more, ignored parameter) goes through
FastAPI, so each case is asked both ways against the same real KM and the answers compared.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest

from km.etsi014.app import parse_simple_enc_keys
from km.etsi014.server import CoalescingTransport
from lab.pki import LabPki
from tests.harness.etsi014 import KmHarness, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def km(tmp_path_factory: pytest.TempPathFactory, pki: LabPki) -> Iterator[KmHarness]:
    harness = KmHarness(tmp_path_factory.mktemp("km"), pki)
    yield harness
    harness.close()


def scope(path: str, query: bytes, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query}


@pytest.mark.parametrize(
    ("query", "number", "size"),
    [
        (b"", 1, None),
        (b"number=3", 3, None),
        (b"size=512", 1, 512),
        (b"size=128&number=2", 2, 128),
        (b"number=007&size=0", 7, 0),
    ],
)
def test_fast_path_reads_plain_queries(query: bytes, number: int, size: int | None) -> None:
    parsed = parse_simple_enc_keys(scope("/api/v1/keys/b/enc_keys", query))
    assert parsed is not None
    slave, request = parsed
    assert (slave, request.number, request.size) == ("b", number, size)


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("POST", "/api/v1/keys/b/enc_keys", b""),
        ("GET", "/api/v1/keys/b/dec_keys", b""),
        ("GET", "/api/v1/keys//enc_keys", b""),
        ("GET", "/api/v1/keys/b/c/enc_keys", b""),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=1&number=2"),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=-1"),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=%31"),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=1&"),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=1&other=2"),
        ("GET", "/api/v1/keys/b/enc_keys", b"number=1234567890"),
    ],
)
def test_fast_path_leaves_everything_else_to_fastapi(method: str, path: str, query: bytes) -> None:
    assert parse_simple_enc_keys(scope(path, query, method)) is None


@pytest.mark.parametrize(
    ("caller", "slave", "query"),
    [
        ("a", "b", ""),
        ("a", "b", "number=3&size=512"),
        ("a", "d", "number=2"),  # slave at another node: through the relay
        ("a", "b", "number=0"),
        ("a", "b", "number=129"),
        ("a", "b", "size=257"),
        ("a", "b", "size=2048"),
        ("a", "nobody", ""),
        ("a", "a", ""),
        ("stranger", "b", ""),
        ("d", "a", ""),
    ],
)
def test_fast_path_and_fastapi_answer_alike(
    km: KmHarness, caller: str, slave: str, query: str
) -> None:
    path = f"/{slave}/enc_keys?{query}"
    with km.client(caller) as client:
        fast = client.get(path)
        routed = client.get(path + ("&" if query else "") + "ignored=1")
    assert fast.status_code == routed.status_code
    assert fast.headers["content-type"] == routed.headers["content-type"]
    if fast.status_code != 200:
        assert fast.json() == routed.json()
        return
    fast_keys, routed_keys = fast.json()["keys"], routed.json()["keys"]
    assert len(fast_keys) == len(routed_keys)
    assert {len(base64.b64decode(k["key"])) for k in fast_keys} == {
        len(base64.b64decode(k["key"])) for k in routed_keys
    }
    assert set(fast_keys[0]) == set(routed_keys[0]) == {"key_ID", "key"}


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


def test_writes_of_one_loop_turn_leave_as_one() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        raw = RecordingTransport()
        transport = CoalescingTransport(raw, loop)
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")
        transport.write(b'{"keys":[]}')
        assert raw.writes == [] and transport.get_write_buffer_size() == 30
        await asyncio.sleep(0)  # one turn of the loop: the flush scheduled first runs
        assert raw.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"keys":[]}']
        transport.write(b"last")
        transport.close()  # held data goes before the close
        assert raw.writes[-1] == b"last" and raw.closed
        dropped = RecordingTransport()
        aborted = CoalescingTransport(dropped, loop)
        aborted.write(b"never sent")
        aborted.abort()
        await asyncio.sleep(0)
        assert dropped.writes == [] and dropped.aborted

    asyncio.run(scenario())
