"""Key associations as the controller installed them in this node's running configuration.

The agent pushes the running `qkd_node` (RFC 7951 JSON, config only) over NodeLink after
every commit. An association is a `qkd_app` (server_app_id = master SAE, client_app_id =
slave SAEs) with `qkdsdn-node:admission` and `qkdsdn-node:relay`, backed by a VIRT `qkd_link`
that names the previous and next hop of this node on the path (absent at the ends).

`parse_node_config` is pure. `Associations` keeps the latest view and lets the relay wait
for an association to be admitted (`ensure`), registering the application when none exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from km.relay.hop_crypto import RelayMode
from km.supply import SupplyError

NODE_KEY = "etsi-qkd-sdn-node:qkd_node"
ADMISSION_KEY = "qkdsdn-node:admission"
RELAY_KEY = "qkdsdn-node:relay"
VIRT = "VIRT"
PHYS = "PHYS"
DEFAULT_BUFFER = 3


class AdmissionState(enum.Enum):
    PENDING = "pending"
    ADMITTED = "admitted"
    REJECTED = "rejected"
    FAILED = "failed"


class ConfigError(ValueError):
    """The node configuration JSON does not have the shape the contract describes."""


@dataclass(frozen=True)
class VirtLink:
    qkdl_id: str
    prev_hop: str | None  # qkdn_id, None at the source
    next_hops: tuple[str, ...]  # qkdn_ids, empty at the destination
    bandwidth: int | None


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
        return min(candidates, key=lambda a: _PREFERENCE[a.state], default=None)

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

EMPTY_VIEW_REVISION = -1


def empty_view(qkdn_id: str) -> NodeView:
    return NodeView(qkdn_id, EMPTY_VIEW_REVISION, (), {})


def parse_node_config(text: str, revision: int = 0) -> NodeView:
    """RFC 7951 JSON of `qkd_node` → NodeView. Raises ConfigError naming the bad field."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"node configuration is not JSON: {exc}") from None
    node = _obj(doc, "document")
    node = _obj(node.get(NODE_KEY, node.get("qkd_node")), NODE_KEY)
    qkdn_id = _str(node.get("qkdn_id"), "qkd_node/qkdn_id")
    links = {
        link.qkdl_id: link
        for link in (
            _parse_link(raw, f"qkd_links/qkd_link[{i}]")
            for i, raw in enumerate(_list(_obj(node.get("qkd_links", {}), "qkd_links"), "qkd_link"))
        )
        if link is not None
    }
    apps = _list(_obj(node.get("qkd_applications", {}), "qkd_applications"), "qkd_app")
    associations = tuple(
        _parse_app(raw, links, f"qkd_applications/qkd_app[{i}]") for i, raw in enumerate(apps)
    )
    return NodeView(qkdn_id, revision, associations, links)


def _parse_link(raw: Any, where: str) -> VirtLink | None:
    link = _obj(raw, where)
    qkdl_id = _str(link.get("qkdl_id"), f"{where}/qkdl_id")
    kind = str(link.get("qkdl_type", "")).rpartition(":")[2]
    if kind != VIRT:
        return None
    prev_hop = link.get("virt_prev_hop")
    next_hops = link.get("virt_next_hop", [])
    if isinstance(next_hops, str):
        next_hops = [next_hops]
    if not isinstance(next_hops, list) or not all(isinstance(h, str) for h in next_hops):
        raise ConfigError(f"{where}/virt_next_hop: expected a list of node ids")
    bandwidth = link.get("virt_bandwidth")
    return VirtLink(
        qkdl_id=qkdl_id,
        prev_hop=None if prev_hop is None else _str(prev_hop, f"{where}/virt_prev_hop"),
        next_hops=tuple(next_hops),
        bandwidth=None if bandwidth is None else _int(bandwidth, f"{where}/virt_bandwidth"),
    )


def _parse_app(raw: Any, links: Mapping[str, VirtLink], where: str) -> Association:
    app = _obj(raw, where)
    slaves = app.get("client_app_id", [])
    if isinstance(slaves, str):
        slaves = [slaves]
    if not isinstance(slaves, list) or not all(isinstance(s, str) for s in slaves):
        raise ConfigError(f"{where}/client_app_id: expected a list of SAE ids")
    admission = _obj(app.get(ADMISSION_KEY, {}), f"{where}/{ADMISSION_KEY}")
    relay = _obj(app.get(RELAY_KEY, {}), f"{where}/{RELAY_KEY}")
    state_text = str(admission.get("state", AdmissionState.PENDING.value))
    try:
        state = AdmissionState(state_text)
    except ValueError:
        raise ConfigError(f"{where}/{ADMISSION_KEY}/state: unknown state {state_text!r}") from None
    try:
        mode = RelayMode.parse(str(relay.get("mode", RelayMode.AES_GCM.value)))
    except ValueError as exc:
        raise ConfigError(f"{where}/{RELAY_KEY}/mode: {exc}") from None
    path = admission.get("path", [])
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise ConfigError(f"{where}/{ADMISSION_KEY}/path: expected a list of node ids")
    backing = app.get("backing_qkdl_id", [])
    if isinstance(backing, str):
        backing = [backing]
    virt = next((links[b] for b in backing if b in links), None)
    next_hop = None
    if virt is not None and virt.next_hops:
        next_hop = virt.next_hops[0]
    return Association(
        app_id=_str(app.get("app_id"), f"{where}/app_id"),
        master=str(app.get("server_app_id", "")),
        slaves=tuple(slaves),
        state=state,
        reason=str(admission.get("reason", "")),
        path=tuple(path),
        virt_link_id=None if virt is None else virt.qkdl_id,
        prev_hop=None if virt is None else virt.prev_hop,
        next_hop=next_hop,
        mode=mode,
        buffer=_int(relay.get("buffer", DEFAULT_BUFFER), f"{where}/{RELAY_KEY}/buffer"),
        remote_qkdn_id=None if app.get("remote_qkdn_id") is None else str(app["remote_qkdn_id"]),
    )


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object")
    return value


def _list(container: dict[str, Any], name: str) -> list[Any]:
    value = container.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{name}: expected a list")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string")
    return value


def _int(value: Any, where: str) -> int:
    # RFC 7951 writes uint32 as a number; be lenient with a numeric string.
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected an integer") from None
    if number < 0:
        raise ConfigError(f"{where}: must not be negative")
    return number


# ------------------------------------------------------------------ the live view


@dataclass(frozen=True)
class AppRequest:
    """What the KM asks its node for (becomes `sdqkdn_application_new`)."""

    master: str
    slaves: tuple[str, ...]
    remote_qkdn_id: str
    min_bandwidth: int
    ttl_s: int


Register = Callable[[AppRequest], Awaitable[None]]


class Associations:
    """The latest NodeView of this node, and waiting for admissions."""

    def __init__(self, qkdn_id: str, register: Register) -> None:
        self._view = empty_view(qkdn_id)
        self._register = register
        self._changed = asyncio.Event()

    @property
    def view(self) -> NodeView:
        return self._view

    def update(self, view: NodeView) -> None:
        if view.qkdn_id != self._view.qkdn_id:
            raise ConfigError(
                f"configuration of node {view.qkdn_id} pushed to the KM of {self._view.qkdn_id}"
            )
        self._view = view
        self._changed.set()
        self._changed = asyncio.Event()

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
                )
            await self.wait_for_change(remaining)
