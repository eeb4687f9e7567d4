"""Intents from the nodes' running configurations (pure): the nodes are the source of truth.

Every `qkd_app` carrying our `qkdsdn:admission` augment belongs to an intent (`app_id`). An
admitted one names its path; its VIRT link (same id) gives the reserved rate. Rejected and
failed ones live on the source node only.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from controller.model import (
    DeviceId,
    Intent,
    IntentId,
    IntentState,
    KeyRequest,
    LinkId,
    Path,
    QoS,
    TopologySnapshot,
)
from controller.nodedata import AppEntry, NodeData


@dataclass(frozen=True)
class Placement:
    """What of an intent one node holds."""

    link: bool
    app: bool


Placements = dict[IntentId, dict[DeviceId, Placement]]

_STATES = {
    "admitted": IntentState.INSTALLED,
    "rejected": IntentState.REJECTED,
    "failed": IntentState.FAILED,
}


def placements_of(data: Mapping[DeviceId, NodeData]) -> Placements:
    found: Placements = {}
    for device, node in data.items():
        apps = {a.app_id for a in node.apps if a.admission_state is not None}
        links = {v.qkdl_id for v in node.virt_links}
        for intent_id in apps | (links & _all_our_ids(data)):
            found.setdefault(intent_id, {})[device] = Placement(
                intent_id in links, intent_id in apps
            )
    return found


def _all_our_ids(data: Mapping[DeviceId, NodeData]) -> set[IntentId]:
    return {a.app_id for node in data.values() for a in node.apps if a.admission_state is not None}


def _hop_links(
    snapshot: TopologySnapshot, nodes: tuple[DeviceId, ...]
) -> tuple[LinkId, ...] | None:
    links = []
    for a, b in itertools.pairwise(nodes):
        between = sorted(snapshot.links_between(a, b), key=lambda link: -link.eskr)
        if not between:
            return None
        links.append(between[0].qkdl_id)
    return tuple(links)


def _request(app: AppEntry, src: DeviceId, dst: DeviceId) -> KeyRequest | None:
    try:
        qos = QoS(app.min_bandwidth, app.max_bandwidth, app.priority, app.ttl, app.jitter)
        return KeyRequest(
            src, dst, app.server_app_id, app.client_app_ids, qos, key_mode=app.key_mode
        )
    except ValueError:
        return None


def rebuild_intents(
    data: Mapping[DeviceId, NodeData], snapshot: TopologySnapshot
) -> tuple[dict[IntentId, Intent], Placements]:
    """Intents and where their entries are, from every reachable node's configuration."""
    best: dict[IntentId, tuple[DeviceId, AppEntry]] = {}
    bandwidth: dict[IntentId, int] = {}
    for device, node in data.items():
        for virt in node.virt_links:
            bandwidth[virt.qkdl_id] = max(bandwidth.get(virt.qkdl_id, 0), virt.bandwidth)
        for app in node.apps:
            if app.admission_state not in _STATES:
                continue
            # prefer the source node's entry: it is the one a rejection or failure is written on
            if app.app_id not in best or app.app_type == "CLIENT":
                best[app.app_id] = (device, app)
    intents: dict[IntentId, Intent] = {}
    for intent_id, (device, app) in best.items():
        state = _STATES[app.admission_state or ""]
        path_nodes = app.admission_path
        if state is IntentState.INSTALLED and len(path_nodes) >= 2:
            src, dst = path_nodes[0], path_nodes[-1]
        else:
            src, dst = app.local_qkdn_id or device, app.remote_qkdn_id
        request = _request(app, src, dst)
        if request is None:
            continue
        path = None
        if state is IntentState.INSTALLED:
            links = _hop_links(snapshot, path_nodes)
            if links is None:
                # a hop of the recorded path is unknown now: keep it, re-routing will decide
                state = IntentState.FAILED
            else:
                path = Path(path_nodes, links)
        intents[intent_id] = Intent(
            intent_id,
            request,
            state,
            path=path,
            bandwidth=bandwidth.get(intent_id, 0) if path is not None else 0,
            reason=app.admission_reason
            or ("" if state is not IntentState.FAILED else "path no longer known"),
        )
    return intents, placements_of(data)
