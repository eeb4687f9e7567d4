"""The key manager's own mutual-TLS material (its km certificate, key and the CA) from the plan."""

from __future__ import annotations

from pathlib import Path

from common.roles import TlsMaterial
from lab.plan import LabPlan


def km_tls_files(plan: LabPlan, node: str) -> tuple[Path, Path, Path]:
    """(certificate, private key, CA) of the key manager of `node` (urn:qkdsdn:km:<node>)."""
    try:
        cert, key = plan.node_certs[node]
    except KeyError:
        raise ValueError(f"the lab plan has no certificate for key manager {node!r}") from None
    return Path(cert), Path(key), Path(plan.credentials.ca_cert)


def km_tls(plan: LabPlan, node: str) -> TlsMaterial:
    return TlsMaterial.from_files(*km_tls_files(plan, node))
