"""common/https_server: serves over TLS with a Date header, and stops at once, not on a tick."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from common import https_server
from common.config import Address
from common.https_server import HttpsServer
from lab.pki import create_lab_pki


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_server_answers_with_a_date_and_stops_without_waiting_for_its_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(https_server, "DATE_REFRESH_S", 3600.0)  # a tick would never come
    pki = create_lab_pki(tmp_path, ["n1"], [])
    cert = pki.kms["n1"]

    def context() -> ssl.SSLContext:
        made = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        made.load_cert_chain(cert.cert, cert.key)
        return made

    async def scenario() -> bytes:
        server = HttpsServer(_hello, Address("127.0.0.1", 0), str(cert.cert), context, "test")
        await server.start()
        try:
            client = ssl.create_default_context(cafile=str(pki.ca.cert))
            client.check_hostname = False
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = await asyncio.wait_for(reader.read(), 10)
            writer.close()
        finally:
            await asyncio.wait_for(server.stop(), 10)  # far less than the hour-long tick
        return response

    response = asyncio.run(scenario())
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200") and b"\r\ndate: " in head
    assert b"hello" in response.split(b"\r\n\r\n", 1)[1]
