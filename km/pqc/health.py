"""What the network says about an association's QKD path, as a `QkdHealth` (pure).

Driven by events, never by a timeout: the controller marks an association failed or rejected
in the node's configuration (after `sdqkdn_link_down` with no other path, or an admission
refused for capacity), the link-key pool toward the first hop is empty, or a relay hop of this
very association failed (remembered until the controller installs it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from km.associations import AdmissionState, Association, NodeView
from km.pqc.mode import QkdHealth


@dataclass(frozen=True)
class PathIdentity:
    """An installed association: a reinstall (new path or VIRT link) is a new identity."""

    app_id: str
    virt_link_id: str | None
    path: tuple[str, ...]

    @staticmethod
    def of(assoc: Association) -> PathIdentity:
        return PathIdentity(assoc.app_id, assoc.virt_link_id, assoc.path)


def qkd_health(
    view: NodeView,
    master: str,
    slaves: Sequence[str],
    slave_qkdn_id: str,
    *,
    ready: int,
    first_hop_keys: int | None,
    failed_paths: frozenset[PathIdentity],
) -> QkdHealth:
    """`ready`: keys relayed ahead for the pair; `first_hop_keys`: link keys held toward the
    next hop (None: unknown); `failed_paths`: installations whose relay failed."""
    assoc = view.source_association(master, slaves, slave_qkdn_id)
    pair = f"{master}→{','.join(slaves)}"
    if assoc is None:  # never asked for: registering it is the QKD path's first step
        return QkdHealth(
            False, f"key association {pair} not registered yet", may_wait=True, pending=True
        )
    if assoc.state in (AdmissionState.FAILED, AdmissionState.REJECTED):
        reason = assoc.reason or "no reason given"
        return QkdHealth(False, f"key association {pair} {assoc.state.value}: {reason}")
    if assoc.state is AdmissionState.PENDING:
        return QkdHealth(
            False, f"key association {pair} not admitted yet", may_wait=True, pending=True
        )
    if PathIdentity.of(assoc) in failed_paths:
        return QkdHealth(False, f"relay of key association {pair} failed on its installed path")
    if ready == 0 and first_hop_keys == 0:
        return QkdHealth(
            False, f"link-key pool toward the first hop of {pair} is empty", may_wait=True
        )
    return QkdHealth(True)
