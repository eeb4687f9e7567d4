"""Client certificate → user name (RFC 7589's cert-to-name, as RFC 8040 §2.5 asks of
RESTCONF): ordered rules matching a certificate's SHA-256 fingerprint, a subjectAltName
value or its subject CN; the first that matches names the user."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

_HEX_PAIRS = re.compile(r"[0-9a-f]{2}(:?[0-9a-f]{2}){31}")


class CertNameError(ValueError):
    """A rule that cannot be used (says which part is wrong)."""


def parse_fingerprint(text: str) -> bytes:
    """`sha256:AB:CD:...` or plain hex (64 digits, colons optional) as 32 bytes."""
    value = text.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    if not _HEX_PAIRS.fullmatch(value) or (":" in value and value.count(":") != 31):
        raise CertNameError(
            f"fingerprint {text!r}: give the certificate's SHA-256 as 64 hex digits "
            "(pairs may be separated by ':', 'sha256:' in front is allowed)"
        )
    return bytes.fromhex(value.replace(":", ""))


def fingerprint_of(der: bytes) -> str:
    """How `openssl x509 -fingerprint -sha256` prints a certificate's fingerprint."""
    return "sha256:" + ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


@dataclass(frozen=True)
class CertRule:
    """One mapping: exactly one of `fingerprint`, `san` and `cn` says which certificates."""

    user: str
    fingerprint: bytes | None = None  # SHA-256 of the certificate (DER)
    san: str | None = None  # a subjectAltName value: URI, DNS name, e-mail or IP address
    cn: str | None = None  # the subject's common name

    def __post_init__(self) -> None:
        given = [x for x in (self.fingerprint, self.san, self.cn) if x is not None]
        if len(given) != 1:
            raise CertNameError(f"user {self.user!r}: give one of fingerprint, san and cn")
        if not self.user:
            raise CertNameError("a certificate rule needs the user it maps to")
        if self.fingerprint is not None and len(self.fingerprint) != 32:
            raise CertNameError(f"user {self.user!r}: a SHA-256 fingerprint has 32 bytes")


@dataclass(frozen=True)
class _Facts:
    fingerprint: bytes
    sans: frozenset[str]
    cns: frozenset[str]


class CertNames:
    """The rules in order; `user_of(der)` for a certificate the TLS layer has verified."""

    def __init__(self, rules: Iterable[CertRule]) -> None:
        self.rules = tuple(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def user_of(self, der: bytes | None) -> str | None:
        """The user of the first rule the certificate matches; None: no certificate, an
        unreadable one, or none matches."""
        if not der or not self.rules:
            return None
        facts = _facts(der)
        if facts is None:
            return None
        for rule in self.rules:
            if (
                (rule.fingerprint is not None and rule.fingerprint == facts.fingerprint)
                or (rule.san is not None and rule.san in facts.sans)
                or (rule.cn is not None and rule.cn in facts.cns)
            ):
                return rule.user
        return None


def _facts(der: bytes) -> _Facts | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    sans: set[str] = set()
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        for kind in (x509.UniformResourceIdentifier, x509.DNSName, x509.RFC822Name):
            sans.update(str(value) for value in extension.value.get_values_for_type(kind))
        sans.update(str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress))
    cns = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    return _Facts(hashlib.sha256(der).digest(), frozenset(sans), frozenset(cns))
