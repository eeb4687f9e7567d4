"""The key manager's own mutual-TLS material (its km certificate, key and the CA) from its config."""

from __future__ import annotations

from common.config import TlsFiles
from common.roles import TlsMaterial


def km_tls(files: TlsFiles) -> TlsMaterial:
    """Read once at start: the certificate names the KM (urn:qkdsdn:km:<node>)."""
    return TlsMaterial.from_files(files.cert, files.key, files.ca)
