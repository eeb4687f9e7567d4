"""TLS of the ETSI 020 face: contexts (own certificate, own CA plus allowed peer CAs), issuer check."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from common.config import TlsFiles


def load_cas(path: Path) -> tuple[x509.Certificate, ...]:
    """The CA certificate(s) of a PEM file (a peer's domain CA)."""
    return tuple(x509.load_pem_x509_certificates(path.read_bytes()))


def issued_by(leaf_pem: bytes, cas: Sequence[x509.Certificate]) -> bool:
    """Whether the certificate `leaf_pem` was signed directly by one of `cas` (its issuer
    name matches and the signature verifies with that CA's key)."""
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
    except ValueError:
        return False
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


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
