"""HTTPS server for ETSI 014 with mutual TLS (uvicorn), handing the client certificate to the app.

uvicorn does not pass the TLS client certificate to the ASGI app. `PeerCertH11Protocol`
reads it once per connection, after the handshake, from
`transport.get_extra_info("ssl_object").getpeercert(binary_form=True)`, and wraps the app of
that connection so each request's scope carries the ASGI TLS extension
(`scope["extensions"]["tls"]`: `client_cert_name` RFC 4514, `client_cert_chain` [PEM]).
The TLS context requires a client certificate signed by the configured CA (CERT_REQUIRED),
so a connection without one, or with one from another CA, fails in the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from uvicorn.protocols.http.h11_impl import H11Protocol

from common.config import Address, TlsFiles
from common.https_server import HttpsServer, bind_socket

ASGIApp = Any  # an ASGI 3 application: (scope, receive, send) -> awaitable

__all__ = [
    "CoalescingTransport",
    "MutualTlsServer",
    "PeerCertH11Protocol",
    "TlsFiles",
    "bind_socket",
    "client_tls_context",
    "server_tls_context",
    "tls_extension",
]


class _WithPeerCert:
    """ASGI wrapper adding the connection's TLS client certificate to every scope."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**scope.get("extensions", {}), "tls": self.tls}}
        await self.app(scope, receive, send)


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI TLS extension dict for one connection (empty names when there is no cert)."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return {"client_cert_chain": [], "client_cert_name": None, "client_cert_error": None}
    cert = x509.load_der_x509_certificate(der)
    return {
        "client_cert_chain": [cert.public_bytes(serialization.Encoding.PEM).decode("ascii")],
        "client_cert_name": cert.subject.rfc4514_string(),
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }


class CoalescingTransport(asyncio.Transport):
    """Holds what is written until `flush()` (at the end of a response) or, at the latest,
    the next turn of the event loop, and writes it at once.

    uvicorn writes a response's head and body separately; over TLS each write became its
    own record and its own send(2). Written together they are one of each (~13 % less CPU per
    request, bench/etsi014.py). Every other call goes to the wrapped transport, after the
    held data where order matters (close, write_eof)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._held)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class PeerCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _WithPeerCert(self.app, tls_extension(transport.get_extra_info("ssl_object")))
        # after super(): its flow control pauses and resumes reading on the real transport
        self.transport = self._writes = CoalescingTransport(transport, asyncio.get_running_loop())

    def on_response_complete(self) -> None:
        # The response is whole: send it now rather than one loop turn later.
        self._writes.flush()
        super().on_response_complete()


def server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(files.cert), str(files.key))
    context.load_verify_locations(cafile=str(files.ca))
    return context


def client_tls_context(files: TlsFiles) -> ssl.SSLContext:
    """Client side of mutual TLS (an SAE or a KM calling another KM).

    Pass it as httpx's `verify=`: httpx 0.28 ignores `cert=` when `verify` is a path.
    """
    context = ssl.create_default_context(cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


class MutualTlsServer(HttpsServer):
    """uvicorn serving `app` on `address` with mutual TLS; `await start()`, `await stop()`.
    The client's certificate reaches the app in the ASGI scope (`PeerCertH11Protocol`)."""

    def __init__(
        self, app: ASGIApp, files: TlsFiles, address: Address, name: str = "ETSI 014"
    ) -> None:
        super().__init__(
            app,
            address,
            str(files.cert),
            lambda: server_tls_context(files),
            name,
            http=PeerCertH11Protocol,
        )
