"""Key associations as the controller installed them in this node's running configuration.

The agent pushes the running `qkd_node` (RFC 7951 JSON, config only) over NodeLink after
every commit. An association is a `qkd_app` (server_app_id = master SAE, client_app_id =
slave SAEs) with `qkdsdn-node:admission` and `qkdsdn-node:relay`, backed by a VIRT `qkd_link`
that names the previous and next hop of this node on the path (absent at the ends).

`parse_node_config` is pure: it reads the tree through the generated model (yang.model).
`Associations` keeps the latest view and lets the relay wait for an association to be
admitted (`ensure`), registering the application when none exists. The view also gives the
relay addresses of the hops' key managers that the controller wrote on the VIRT links
(`qkdsdn-node:hop_key_manager`): how a KM whose file omits a peer's address learns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from km.pqc.mode import KeyMode
from km.relay.hop_crypto import RelayMode
from km.supply import SupplyError
from yang.model import AdmissionState, ModelError, QkdApp, QkdNode, View
from yang.model import RelayMode as ModelRelayMode
from yang.virt_link import VirtLink, virt_links

__all__ = [
    "AdmissionState",
    "AppRequest",
    "Association",
    "Associations",
    "ConfigError",
    "NodeView",
    "VirtLink",
    "empty_view",
    "node_view",
    "parse_node_config",
]

DEFAULT_BUFFER = 3  # the model's default of qkdsdn-node:relay/buffer


class ConfigError(ValueError):
    """The node configuration JSON does not fit the node model; the message names the field."""


@dataclass(frozen=True)
class Association:
    app_id: str
    master: str
    slaves: tuple[str, ...]
    state: AdmissionState
    reason: str
    path: tuple[str, ...]  # qkdn_ids from source to destination
    virt_link_id: str | None
    prev_hop: str | None
    next_hop: str | None
    mode: RelayMode
    buffer: int
    remote_qkdn_id: str | None
    key_mode: KeyMode | None = None  # qkdsdn-node:key_mode as written (None: not written)

    @property
    def destination(self) -> str | None:
        return self.path[-1] if self.path else self.remote_qkdn_id

    def serves(self, master: str, slaves: Sequence[str]) -> bool:
        return self.master == master and set(slaves) <= set(self.slaves)


@dataclass(frozen=True)
class NodeView:
    """What the KM needs from one running configuration."""

    qkdn_id: str
    revision: int
    associations: tuple[Association, ...]
    virt_links: Mapping[str, VirtLink]
    # qkdn_id -> relay address of other nodes' key managers, as the controller wrote them on
    # this node's VIRT links (qkdsdn:hop_key_manager); the latest link's entry wins.
    relay_addresses: Mapping[str, str] = field(default_factory=dict)

    def source_association(
        self, master: str, slaves: Sequence[str], slave_qkdn_id: str
    ) -> Association | None:
        """The association this node originates for (master → slaves at slave_qkdn_id);
        an admitted one before a pending one before a refused one (an old rejection may stay
        in the configuration next to a later admission)."""
        candidates = [
            assoc
            for assoc in self.associations
            if assoc.serves(master, slaves)
            and assoc.prev_hop is None
            and assoc.destination in (slave_qkdn_id, None)
            and (not assoc.path or assoc.path[0] == self.qkdn_id)
        ]
        found = min(candidates, key=lambda a: _PREFERENCE[a.state], default=None)
        if found is None or found.state is not AdmissionState.ADMITTED:
            # Across domains the controller may end the segment at another border than the
            # one the applications map names (several border sites toward one domain).
            elsewhere = self._admitted_elsewhere(master, slaves)
            if elsewhere is not None:
                return elsewhere
        return found

    def _admitted_elsewhere(self, master: str, slaves: Sequence[str]) -> Association | None:
        """The admitted association originating here for exactly (master, slaves), whatever
        node it ends at."""
        for assoc in self.associations:
            if (
                assoc.master == master
                and set(assoc.slaves) == set(slaves)
                and assoc.prev_hop is None
                and assoc.state is AdmissionState.ADMITTED
                and assoc.path
                and assoc.path[0] == self.qkdn_id
            ):
                return assoc
        return None

    def destination_association(self, master: str, slaves: Sequence[str]) -> Association | None:
        """The admitted association that ends at this node for (master → slaves)."""
        for assoc in self.associations:
            if (
                assoc.serves(master, slaves)
                and assoc.state is AdmissionState.ADMITTED
                and assoc.path
                and assoc.path[-1] == self.qkdn_id
            ):
                return assoc
        return None

    def forwarding_entry(self, virt_link_id: str, sender: str) -> Association | None:
        """The admitted association whose VIRT link here has `sender` as previous hop."""
        for assoc in self.associations:
            if (
                assoc.virt_link_id == virt_link_id
                and assoc.prev_hop == sender
                and assoc.state is AdmissionState.ADMITTED
            ):
                return assoc
        return None


_PREFERENCE = {
    AdmissionState.ADMITTED: 0,
    AdmissionState.PENDING: 1,
    AdmissionState.REJECTED: 2,
    AdmissionState.FAILED: 2,
}
_RELAY_MODES = {mode: RelayMode.parse(mode.value) for mode in ModelRelayMode}

EMPTY_VIEW_REVISION = -1


def empty_view(qkdn_id: str) -> NodeView:
    return NodeView(qkdn_id, EMPTY_VIEW_REVISION, (), {})


def parse_node_config(text: str, revision: int = 0) -> NodeView:
    """RFC 7951 JSON of `qkd_node` → NodeView. Raises ConfigError naming the bad field.

    Read through the key manager's view of the model: what `node_view` reads, with every
    check; the parts it never reads (interfaces, QoS, statistics...) are not parsed."""
    try:
        node = QkdNode.from_json_text(text, view=View.KEY_MANAGER)
    except ModelError as exc:
        raise ConfigError(f"node configuration: {exc}") from None
    return node_view(node, revision)


def node_view(node: QkdNode, revision: int = 0) -> NodeView:
    """The associations of a node's tree (read through the generated model)."""
    links = {virt.qkdl_id: virt for virt in virt_links(node)}
    associations = tuple(_association(app, links) for app in node.qkd_applications.qkd_app)
    relays = {hop: address for virt in links.values() for hop, address in virt.hop_relays}
    if relays:
        relays.pop(node.qkdn_id, None)
    return NodeView(node.qkdn_id, revision, associations, links, relays)


def _association(app: QkdApp, links: Mapping[str, VirtLink]) -> Association:
    admission, relay = app.admission, app.relay
    virt = None
    for backing in app.backing_qkdl_id:
        if backing in links:
            virt = links[backing]
            break
    return Association(
        app_id=app.app_id,
        master=app.server_app_id or "",
        slaves=app.client_app_id,
        state=admission.state or AdmissionState.PENDING,
        reason=admission.reason or "",
        path=admission.path,
        virt_link_id=None if virt is None else virt.qkdl_id,
        prev_hop=None if virt is None else virt.prev_hop,
        next_hop=virt.next_hops[0] if virt is not None and virt.next_hops else None,
        mode=_RELAY_MODES[relay.mode_or_default],
        buffer=relay.buffer_or_default,
        remote_qkdn_id=app.remote_qkdn_id,
        key_mode=None if app.key_mode is None else KeyMode(app.key_mode.value),
    )


# ------------------------------------------------------------------ the live view


@dataclass(frozen=True)
class AppRequest:
    """What the KM asks its node for (becomes `sdqkdn_application_new`)."""

    master: str
    slaves: tuple[str, ...]
    remote_qkdn_id: str
    min_bandwidth: int
    ttl_s: int
    key_mode: KeyMode | None = None  # from the master's access policy (None: not said)


Register = Callable[[AppRequest], Awaitable[None]]


class Associations:
    """The latest NodeView of this node, and waiting for admissions."""

    def __init__(self, qkdn_id: str, register: Register) -> None:
        self._view = empty_view(qkdn_id)
        self._register = register
        self._changed = asyncio.Event()
        # Called with (old view, new view) after every update (km/pqc reacts to failures).
        self.listeners: list[Callable[[NodeView, NodeView], None]] = []

    @property
    def view(self) -> NodeView:
        return self._view

    def update(self, view: NodeView) -> None:
        if view.qkdn_id != self._view.qkdn_id:
            raise ConfigError(
                f"configuration of node {view.qkdn_id} pushed to the KM of {self._view.qkdn_id}"
            )
        old, self._view = self._view, view
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            listener(old, view)

    async def wait_for_change(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives together with the event (CPython gh-86296), and shutdown would hang.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def ensure(
        self,
        request: AppRequest,
        timeout: float,
    ) -> Association:
        """The admitted association for the request, registering the app if there is none.

        Raises SupplyError(503, reason) when it is rejected or failed, or not admitted in time.
        """
        deadline = time.monotonic() + timeout
        registered = False
        while True:
            assoc = self._view.source_association(
                request.master, request.slaves, request.remote_qkdn_id
            )
            if assoc is not None:
                if assoc.state is AdmissionState.ADMITTED:
                    return assoc
                if assoc.state in (AdmissionState.REJECTED, AdmissionState.FAILED):
                    reason = assoc.reason or "no reason given"
                    raise SupplyError(
                        503,
                        f"key association {request.master}→{','.join(request.slaves)}"
                        f" {assoc.state.value}: {reason}",
                        reason="admission",
                    )
            elif not registered:
                await self._register(request)
                registered = True
                continue  # the view may have changed while registering
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SupplyError(
                    503,
                    f"key association {request.master}→{','.join(request.slaves)} not admitted"
                    f" within {timeout:g} s",
                    reason="admission",
                )
            await self.wait_for_change(remaining)
