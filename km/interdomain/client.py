"""The ETSI 020 client of a border KM: POSTs to a peer KMS, retried on transport errors until a deadline.

A retry sends the very same body (same key_IDs): the receiver is idempotent by key_ID, so a
hand-off retried after a lost answer never makes a second key.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.05
RETRY_MOST_S = 0.5


class PeerRefused(Exception):
    """The peer answered with an error status (4xx): retrying the same body will not help."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message


class PeerUnreachable(Exception):
    """No answer (or only 5xx) from the peer before the deadline."""


class Etsi020Client:
    def __init__(self, context: ssl.SSLContext) -> None:
        # TCP_NODELAY: h11 writes a request's head and body apart; without it the body waits
        # for the server's delayed ACK (~40 ms per request, measured by bench/etsi020.py).
        transport = httpx.AsyncHTTPTransport(
            verify=context, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        self._http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0))

    async def close(self) -> None:
        await self._http.aclose()

    async def post(self, url: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POSTs `body` to `url` until a 200 or a 4xx, or the deadline (time.monotonic())."""
        pause = RETRY_FIRST_S
        last = "no attempt"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerUnreachable(f"{url}: {last}")
            try:
                response = await self._http.post(url, json=body, timeout=remaining)
            except httpx.HTTPError as exc:  # transport: connect refused, reset, timeout
                last = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    answer = response.json()
                    return answer if isinstance(answer, dict) else {}
                message = _message(response)
                if 400 <= response.status_code < 500:
                    raise PeerRefused(response.status_code, message)
                last = f"{response.status_code}: {message}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerUnreachable(f"{url}: {last}")
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, RETRY_MOST_S)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        text = str(body.get("message", ""))
        details = body.get("details")
        if isinstance(details, list) and details:
            text += " (" + "; ".join(f"{d.get('loc')}: {d.get('msg')}" for d in details) + ")"
        return text
    return str(body)[:200]
