"""RESTCONF over HTTPS for one agent: uvicorn with the agent's TLS material, an ASGI adapter
to `Restconf.handle`, and who the client is: HTTP Basic against the agent's accounts, or
else its TLS client certificate mapped to an account (`cert_to_name`, RFC 8040 §2.5).

A password is checked with scrypt once, off the event loop; a good one is remembered (as an
HMAC under a key of this process, never the password) for `AUTH_CACHE_S`, so a client that
sends it with every request does not pay tens of milliseconds each time. The certificate is
read once per connection, after the handshake (uvicorn does not hand it to the app).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from typing import Any
from urllib.parse import parse_qs

from uvicorn.protocols.http.h11_impl import H11Protocol

from agents.access.cert_names import CertNames
from agents.access.users import Accounts
from agents.restconf.protocol import Request, Response, Restconf
from common.config import Address, TlsFiles
from common.https_server import HttpsServer

log = logging.getLogger(__name__)

AUTH_CACHE_S = 60.0
MAX_BODY_BYTES = 1024 * 1024


class BasicAuth:
    """Who a request's `Authorization: Basic` header names, if its password is right."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._key = secrets.token_bytes(32)
        self._good: dict[str, tuple[bytes, float]] = {}

    async def user_of(self, header: str | None) -> str | None:
        if header is None or header[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        if not colon or not user:
            return None
        tag = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        remembered = self._good.get(user)
        now = time.monotonic()
        if (
            remembered is not None
            and remembered[1] > now
            and hmac.compare_digest(remembered[0], tag)
        ):
            return user
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self._accounts.password_ok, user, password):
            return None
        self._good[user] = (tag, now + AUTH_CACHE_S)
        return user


_PEER = "qkdsdn.peer"  # scope["extensions"][_PEER]: the connection's client certificate


class _WithPeer:
    """ASGI wrapper handing every request of one connection the same `peer` dict."""

    def __init__(self, app: Any, peer: dict[str, Any]) -> None:
        self.app = app
        self.peer = peer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":  # uvicorn makes each request's scope: add to it
            scope.setdefault("extensions", {})[_PEER] = self.peer
        await self.app(scope, receive, send)


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, adding the TLS client certificate (DER, None if the client
    sent none; the handshake has checked it against the CA) to each request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app = _WithPeer(self.app, {"der": der or None})


class RestconfApp:
    """The ASGI application: a request read whole, handed to `Restconf`, answered.

    The user: the Authorization header's (checked; a wrong one is nobody) when sent, else
    the client certificate's account under `certs`, else nobody (401)."""

    def __init__(self, restconf: Restconf, auth: BasicAuth, certs: CertNames | None = None) -> None:
        self._restconf = restconf
        self._auth = auth
        self._certs = certs or CertNames(())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if len(body) > MAX_BODY_BYTES:
                await _send(send, Response(413, (("content-type", "text/plain"),), b"too big"))
                return
            if not message.get("more_body"):
                break
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        header = headers.get("authorization")
        if header is not None:
            user = await self._auth.user_of(header)
        else:
            user = self._cert_user(scope)
        request = Request(scope["method"], path, query, headers, bytes(body), user)
        await _send(send, self._restconf.handle(request))

    def _cert_user(self, scope: dict[str, Any]) -> str | None:
        if not self._certs:
            return None
        peer = scope.get("extensions", {}).get(_PEER)
        if peer is None:
            return None
        if "user" not in peer:  # once per connection
            peer["user"] = self._certs.user_of(peer.get("der"))
        user: str | None = peer["user"]
        return user


async def _send(send: Any, response: Response) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    headers.append((b"content-length", str(len(response.body)).encode()))
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """The agent's certificate; a client certificate is checked against the CA if sent."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert), str(files.key))
    context.load_verify_locations(str(files.ca))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class RestconfServer(HttpsServer):
    """uvicorn serving a `RestconfApp` over HTTPS on `address`; start(), stop()."""

    def __init__(self, app: RestconfApp, files: TlsFiles, address: Address) -> None:
        super().__init__(
            app,
            address,
            str(files.cert),
            lambda: tls_context(files),
            "RESTCONF",
            http=PeerCertProtocol,
        )
