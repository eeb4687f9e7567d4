"""Who a certificate speaks for: a role and a name, carried as a URI SAN `urn:qkdsdn:ROLE:NAME`.

Every internal interface decides on the role and the name of the caller's certificate, never
on the CN alone: an application (SAE) named like a node still carries `urn:qkdsdn:sae:...`.
A certificate with no such URI, or with more than one, has no identity and is refused.
`peer_identity` reads the caller's certificate from a grpc.aio call; `server_credentials`
and `channel_credentials` build mutual-TLS credentials from a `TlsMaterial`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from common.config import TlsFiles

URN_PREFIX = "urn:qkdsdn:"
# A name is what the lab accepts as a node or application name (lab/topology.py), and more:
# letters, digits and . _ - ; never ":" (it separates the role from the name).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Role(enum.StrEnum):
    KM = "km"  # a key manager (server of ETSI 014/004 and relay, client of its agent)
    AGENT = "agent"  # a node's agent (server of KeyDelivery/NodeLink/AgentControl)
    SAE = "sae"  # an application (client of ETSI 014/004)
    CONTROLLER = "controller"  # the SDN controller
    OPERATOR = "operator"  # a person or script operating the twin (fault injection)


class IdentityError(ValueError):
    """A role or name that cannot form an identity; the message says why."""


@dataclass(frozen=True)
class Identity:
    role: Role
    name: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise IdentityError(
                f"{self.name!r}: an identity name is 1-128 letters, digits, '.', '_' or '-'"
                " starting with a letter or digit"
            )

    @property
    def uri(self) -> str:
        return f"{URN_PREFIX}{self.role.value}:{self.name}"

    def __str__(self) -> str:
        return f"{self.role.value} {self.name!r}"


def parse_identity_uri(uri: str) -> Identity | None:
    """The identity named by `urn:qkdsdn:ROLE:NAME`; None for any other URI."""
    if not uri.startswith(URN_PREFIX):
        return None
    role_text, sep, name = uri[len(URN_PREFIX) :].partition(":")
    if not sep:
        return None
    try:
        return Identity(Role(role_text), name)
    except ValueError:  # unknown role or unusable name
        return None


def identity_of_certificate(cert: x509.Certificate) -> Identity | None:
    """The one qkdsdn identity in the certificate's URI SANs; None when there is none, more
    than one, or a `urn:qkdsdn:` URI that does not parse (a forged or broken certificate)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ours = [uri for uri in sans.get_values_for_type(x509.UniformResourceIdentifier)]
    ours = [uri for uri in ours if uri.startswith(URN_PREFIX)]
    if len(ours) != 1:
        return None
    return parse_identity_uri(ours[0])


@functools.lru_cache(maxsize=1024)
def identity_of_pem(pem: bytes) -> Identity | None:
    """`identity_of_certificate` of a PEM certificate (memoised: peers reconnect with the
    same certificate); None when the PEM does not parse."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    return identity_of_certificate(cert)


def peer_identity(context: Any) -> Identity | None:
    """The identity of the caller of a gRPC call (its TLS client certificate), or None.

    `context` is a grpc.aio.ServicerContext; gRPC has already checked the certificate's chain
    against the server's CA (mutual TLS), so only the role and name are read here."""
    pems = list(context.auth_context().get("x509_pem_cert") or [])
    if len(pems) != 1:
        return None
    return identity_of_pem(bytes(pems[0]))


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """A certificate, its private key and the CA that signs the allowed peers (PEM bytes)."""

    cert: bytes
    key: bytes
    ca: bytes

    def __repr__(self) -> str:  # never the private key
        return "TlsMaterial(cert, key, ca)"

    @staticmethod
    def from_files(cert: Path | str, key: Path | str, ca: Path | str) -> TlsMaterial:
        return TlsMaterial(Path(cert).read_bytes(), Path(key).read_bytes(), Path(ca).read_bytes())

    @staticmethod
    def of(files: TlsFiles) -> TlsMaterial:
        """The material a process's config names (read once, at start)."""
        return TlsMaterial.from_files(files.cert, files.key, files.ca)


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """Mutual TLS: a client without a certificate signed by `tls.ca` fails the handshake."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
    )


def channel_credentials(tls: TlsMaterial) -> grpc.ChannelCredentials:
    """A client presenting `tls.cert`, trusting servers signed by `tls.ca`."""
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
