"""Intent compilation (pure): a decision becomes per-node `edit-config` payloads.

On every node of the path: a VIRT `qkd_link` (`qkdl_id` = intent id) with `virt_prev_hop`,
`virt_next_hop`, `virt_bandwidth`, and a `qkd_app` (`app_id` = intent id) backed by it, with
our `qkdsdn:admission`, `qkdsdn:relay` and `qkdsdn:key_mode` augments. Entries are written with
`operation="replace"` so that re-installing (re-routing) an intent rewrites them whole, and
withdrawn with `operation="delete"`, so a withdrawal removes exactly what was installed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from controller.errors import CompileError
from controller.model import DeviceId, IntentId, KeyRequest, Path
from controller.names import NC_NS, QKD_NS, SDN_NS, element, identity


class EditKind(enum.Enum):
    INSTALL = "install"
    WITHDRAW = "withdraw"
    REJECT = "reject"
    BUFFER = "buffer"  # only an installed app's qkdsdn:relay/buffer


@dataclass(frozen=True)
class RelaySettings:
    """The `qkdsdn:relay` augment written into every app (from the lab plan's settings)."""

    mode: str = "aes-gcm"
    buffer: int = 3


@dataclass(frozen=True)
class DeviceEdit:
    """One node's share of an intent: the <config> to send and what to check against YANG."""

    device: DeviceId
    kind: EditKind
    config: str  # <config> with nc:operation attributes, for edit-config
    data: str | None  # the same entries as plain data, for YANG validation (None for deletes)


Validator = Callable[[str], list[str]]  # data XML -> problems (empty when valid)


def _config(device: DeviceId, *entries: str) -> str:
    links = [e for e in entries if e.startswith("<qkd_link")]
    apps = [e for e in entries if e.startswith("<qkd_app")]
    body = [element("qkdn_id", text=device)]
    if links:
        body.append(element("qkd_links", *links))
    if apps:
        body.append(element("qkd_applications", *apps))
    return element(
        "config", element("qkd_node", *body, xmlns=QKD_NS), xmlns=NC_NS, **{"xmlns__nc": NC_NS}
    )


def _op(operation: str | None) -> dict[str, str]:
    return {"nc__operation": operation} if operation else {}


def _virt_link(
    intent_id: IntentId,
    path: Path,
    index: int,
    bandwidth: int,
    operation: str | None,
    km_relays: Mapping[DeviceId, str],
) -> str:
    nodes = path.nodes
    parts = [
        element("qkdl_id", text=intent_id),
        element("qkdl_enable", text="true"),
        element("qkdl_local", element("qkdn_id", text=nodes[0])),
        element("qkdl_remote", element("qkdn_id", text=nodes[-1])),
        identity("qkdl_type", "VIRT"),
    ]
    if index > 0:
        parts.append(element("virt_prev_hop", text=nodes[index - 1]))
    if index < len(nodes) - 1:
        parts.append(element("virt_next_hop", text=nodes[index + 1]))
    parts.append(element("virt_bandwidth", text=bandwidth))
    # Where the hops' key managers relay: the KM here learns its neighbours from the network.
    for hop in (nodes[i] for i in (index - 1, index + 1) if 0 <= i < len(nodes)):
        if km_relays.get(hop):
            parts.append(
                element(
                    "hop_key_manager",
                    element("qkdn_id", text=hop),
                    element("relay_address", text=km_relays[hop]),
                    xmlns=SDN_NS,
                )
            )
    return element("qkd_link", *parts, **_op(operation))


def _qos(request: KeyRequest) -> str:
    qos = request.qos
    return element(
        "app_qos",
        element("max_bandwidth", text=qos.max_bandwidth),
        element("min_bandwidth", text=qos.min_bandwidth),
        element("jitter", text=qos.jitter),
        element("ttl", text=qos.ttl),
    )


def _admission(state: str, path: Iterable[DeviceId] = (), reason: str = "") -> str:
    parts = [element("state", text=state)]
    if reason:
        parts.append(element("reason", text=reason))
    parts.extend(element("path", text=node) for node in path)
    return element("admission", *parts, xmlns=SDN_NS)


def _app(
    intent_id: IntentId,
    request: KeyRequest,
    app_type: str,
    local: DeviceId,
    remote: DeviceId,
    augments: Iterable[str],
    operation: str | None,
    backing: bool = True,
) -> str:
    """ETSI leaves first, then our augment containers."""
    parts = [element("app_id", text=intent_id), identity("app_type", app_type)]
    if request.server_app_id:
        parts.append(element("server_app_id", text=request.server_app_id))
    parts.extend(element("client_app_id", text=c) for c in request.client_app_ids)
    parts.append(element("app_priority", text=request.qos.priority))
    parts.append(_qos(request))
    if backing:
        parts.append(element("backing_qkdl_id", text=intent_id))
    parts.append(element("local_qkdn_id", text=local))
    parts.append(element("remote_qkdn_id", text=remote))
    parts.extend(augments)
    return element("qkd_app", *parts, **_op(operation))


def _key_mode(request: KeyRequest) -> str:
    return element("key_mode", text=request.key_mode.value, xmlns=SDN_NS)


def _install_entries(
    intent_id: IntentId,
    request: KeyRequest,
    path: Path,
    bandwidth: int,
    relay: RelaySettings,
    index: int,
    operation: str | None,
    km_relays: Mapping[DeviceId, str],
) -> tuple[str, str]:
    node = path.nodes[index]
    at_end = index in (0, len(path.nodes) - 1)
    remote = path.nodes[0] if index == len(path.nodes) - 1 else path.nodes[-1]
    augments = [
        _admission("admitted", path.nodes),
        element(
            "relay",
            element("mode", text=relay.mode),
            element("buffer", text=relay.buffer),
            xmlns=SDN_NS,
        ),
        _key_mode(request),
    ]
    link = _virt_link(intent_id, path, index, bandwidth, operation, km_relays)
    app = _app(
        intent_id, request, "CLIENT" if at_end else "INTERNAL", node, remote, augments, operation
    )
    return link, app


def compile_install(
    intent_id: IntentId,
    request: KeyRequest,
    path: Path,
    bandwidth: int,
    relay: RelaySettings = RelaySettings(),
    km_relays: Mapping[DeviceId, str] | None = None,
) -> dict[DeviceId, DeviceEdit]:
    """The edits that install an admitted intent on every node of its path. `km_relays`:
    node -> its key manager's relay address, written on each VIRT link for the hops before
    and after the node (`qkdsdn:hop_key_manager`)."""
    relays = km_relays or {}
    if path.nodes[0] != request.src or path.nodes[-1] != request.dst:
        raise CompileError(f"path {list(path.nodes)} does not join {request.src} to {request.dst}")
    if len(set(path.nodes)) != len(path.nodes):
        raise CompileError(f"path {list(path.nodes)} visits a node twice")
    edits: dict[DeviceId, DeviceEdit] = {}
    for index, node in enumerate(path.nodes):
        sent = _install_entries(
            intent_id, request, path, bandwidth, relay, index, "replace", relays
        )
        plain = _install_entries(intent_id, request, path, bandwidth, relay, index, None, relays)
        edits[node] = DeviceEdit(
            node, EditKind.INSTALL, _config(node, *sent), _config(node, *plain)
        )
    return edits


def _deletes(intent_id: IntentId, link: bool, app: bool) -> list[str]:
    entries = []
    if link:
        entries.append(
            element("qkd_link", element("qkdl_id", text=intent_id), nc__operation="delete")
        )
    if app:
        entries.append(
            element("qkd_app", element("app_id", text=intent_id), nc__operation="delete")
        )
    return entries


def compile_withdraw(
    intent_id: IntentId, devices: Iterable[DeviceId], link: bool = True, app: bool = True
) -> dict[DeviceId, DeviceEdit]:
    """Deletes exactly the intent's entries (its VIRT link and/or its app) on those nodes."""
    return {
        node: DeviceEdit(
            node, EditKind.WITHDRAW, _config(node, *_deletes(intent_id, link, app)), None
        )
        for node in devices
    }


def compile_reroute(
    intent_id: IntentId,
    request: KeyRequest,
    old_path: Path | None,
    new_path: Path,
    bandwidth: int,
    relay: RelaySettings = RelaySettings(),
    km_relays: Mapping[DeviceId, str] | None = None,
) -> dict[DeviceId, DeviceEdit]:
    """One transaction: the new path's nodes get the entries rewritten (replace), nodes only on
    the old path lose them (delete)."""
    edits = compile_install(intent_id, request, new_path, bandwidth, relay, km_relays)
    gone = [n for n in (old_path.nodes if old_path else ()) if n not in edits]
    edits.update(compile_withdraw(intent_id, gone))
    return edits


def compile_rejection(
    intent_id: IntentId,
    request: KeyRequest,
    reason: str,
    state: str = "rejected",
    delete_link: bool = False,
) -> dict[DeviceId, DeviceEdit]:
    """A rejected (or failed) request: one qkd_app on the source node saying why, for its key
    manager; `delete_link` also removes the VIRT link a failed intent had there."""
    entries = [
        _app(
            intent_id,
            request,
            "CLIENT",
            request.src,
            request.dst,
            [_admission(state, reason=reason), _key_mode(request)],
            operation,
            backing=False,
        )
        for operation in ("replace", None)
    ]
    removed = _deletes(intent_id, link=True, app=False) if delete_link else []
    return {
        request.src: DeviceEdit(
            request.src,
            EditKind.REJECT,
            _config(request.src, *removed, entries[0]),
            _config(request.src, entries[1]),
        )
    }


def compile_buffer(intent_id: IntentId, device: DeviceId, buffer: int) -> DeviceEdit:
    """Sets an installed app's `qkdsdn:relay/buffer` on one node (a merge: nothing else of
    the app changes); its key manager keeps that many relayed keys ready."""
    if not 0 <= buffer <= 0xFFFFFFFF:
        raise CompileError(f"relay buffer {buffer} is not a uint32")
    entry = element(
        "qkd_app",
        element("app_id", text=intent_id),
        element("relay", element("buffer", text=buffer), xmlns=SDN_NS),
    )
    return DeviceEdit(device, EditKind.BUFFER, _config(device, entry), None)


def check_edits(edits: Mapping[DeviceId, DeviceEdit], validate: Validator | None) -> None:
    """Validates every edit's data against YANG before anything is sent."""
    if validate is None:
        return
    for device, edit in edits.items():
        if edit.data is None:
            continue
        problems = validate(edit.data)
        if problems:
            raise CompileError(
                f"edit for node {device} fails YANG validation: {'; '.join(problems)}"
            )
