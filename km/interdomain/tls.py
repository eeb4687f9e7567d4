"""TLS contexts of the ETSI 020 face: the KM's own certificate, its CA plus the allowed peer CAs."""

from __future__ import annotations

import ssl
from pathlib import Path

from common.config import TlsFiles


def _trust(context: ssl.SSLContext, tls: TlsFiles, trusted_cas: tuple[Path, ...]) -> None:
    context.load_verify_locations(cafile=str(tls.ca))
    for ca in trusted_cas:
        context.load_verify_locations(cafile=str(ca))


def server_context(tls: TlsFiles, trusted_cas: tuple[Path, ...]) -> ssl.SSLContext:
    """Mutual TLS: a client whose chain verifies against neither CA fails the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(tls.cert), str(tls.key))
    _trust(context, tls, trusted_cas)
    return context


def client_context(tls: TlsFiles, trusted_cas: tuple[Path, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.load_cert_chain(str(tls.cert), str(tls.key))
    _trust(context, tls, trusted_cas)
    return context
