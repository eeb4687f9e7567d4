"""Three domains in a chain A – B – C (synthetic topologies, in-memory devices) for the
inter-domain tests: each with its own intent service, DomainService and peer clients."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from common.audit import AuditLog
from controller.config import DomainConfig, PeerDomain
from controller.intents.service import IntentService
from controller.interdomain.client import PeerAnswer
from controller.interdomain.coordinator import Coordinator, PeerClient
from controller.interdomain.reservations import Hold, ReservationRequest
from controller.interdomain.service import DomainService, answer
from controller.interdomain.view import DomainView
from controller.model import TopologySnapshot
from controller.paths import FewestHops
from controller.topology.synthetic import snapshot_from_graph
from tests.unit.test_intents_service import FakeDevices

# Internal node names are distinctive, so that a test can look for them anywhere.
CHAIN: Mapping[str, tuple[list[str], dict[str, str], dict[str, str]]] = {
    # domain: (nodes in a line, borders node -> peer, saes sae -> node)
    "A": (["alphainner", "a_b"], {"a_b": "B"}, {"app-a": "alphainner"}),
    "B": (["b_a", "betamiddle", "b_c"], {"b_a": "A", "b_c": "C"}, {"app-b1": "betamiddle"}),
    "C": (["c_b", "gammainner"], {"c_b": "B"}, {"app-c": "gammainner"}),
}
NEIGHBOURS = {"A": ("B", "C"), "B": ("A", "C"), "C": ("B", "A")}  # every domain peers the others


def domain_config(
    name: str, ttl_s: float = 10.0, timeout_s: float = 1.0, **peer_policy: object
) -> DomainConfig:
    _, borders, saes = CHAIN[name]
    peers = tuple(
        replace(
            PeerDomain(peer, f"http://{peer}.invalid", Path("-"), Path("-")),
            **peer_policy,  # type: ignore[arg-type]
        )
        for peer in NEIGHBOURS[name]
    )
    return DomainConfig(name, borders, saes, peers, ttl_s, timeout_s, 1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Domain:
    name: str
    snapshot: TopologySnapshot
    ids: dict[str, str]
    devices: FakeDevices
    intents: IntentService
    service: DomainService
    audit: Path
    coordinator: Coordinator | None = None

    def entries(self) -> dict[str, set[tuple[str, str]]]:
        return {n: set(self.devices.nodes[i].running) for n, i in self.ids.items()}

    def holding(self) -> list[Hold]:
        """Reservations still live here."""
        return [
            h
            for h in self.service.book.all()
            if h.state.value in ("reserved", "committing", "committed")
        ]

    def reserved_rate(self) -> int:
        return sum(r.bandwidth for r in self.intents.reservations().by_intent.values())


def make_domain(
    name: str, tmp: Path, clock: Clock, rate: int = 10_000, config: DomainConfig | None = None
) -> Domain:
    nodes, _, _ = CHAIN[name]
    graph = nx.path_graph(nodes)
    snapshot, ids = snapshot_from_graph(graph, rate=lambda a, b, d: rate)
    devices = FakeDevices({i: n for n, i in ids.items()})
    intents = IntentService(lambda: snapshot, devices, FewestHops())
    audit = tmp / f"audit-{name}.jsonl"
    service = DomainService(
        config or domain_config(name),
        lambda: snapshot,
        intents,
        AuditLog(f"controller:{name}", audit),
        clock,
    )
    return Domain(name, snapshot, ids, devices, intents, service, audit)


@dataclass
class LocalPeer:
    """A peer client that calls another domain's service in-process, as `caller`."""

    service: DomainService
    caller: str
    hang: bool = False  # answers nothing, ever (a controller that stopped answering)
    refuse_commit: bool = False
    calls: list[str] = field(default_factory=list)

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.Event().wait()

    async def view(self) -> DomainView:
        await self._maybe_hang()
        return self.service.view()

    async def push_view(self, view: DomainView) -> PeerAnswer:
        await self._maybe_hang()
        result = self.service.accept_view(self.caller, view)
        return PeerAnswer(200 if isinstance(result, DomainView) else 403, {})

    async def reserve(self, request: ReservationRequest) -> PeerAnswer:
        self.calls.append("reserve")
        await self._maybe_hang()
        result = self.service.reserve(self.caller, request)
        status, body = answer(result)
        return PeerAnswer(201 if isinstance(result, Hold) else status, dict(body))

    async def commit(self, ident: str) -> PeerAnswer:
        self.calls.append("commit")
        await self._maybe_hang()
        if self.refuse_commit:
            return PeerAnswer(502, {"detail": "install failed (injected)"})
        status, body = answer(await self.service.commit(self.caller, ident))
        return PeerAnswer(status, dict(body))

    async def release(self, ident: str) -> PeerAnswer:
        self.calls.append("release")
        await self._maybe_hang()
        status, body = answer(await self.service.release(self.caller, ident))
        return PeerAnswer(status, dict(body))

    async def reservations(self) -> list[dict[str, Any]] | None:
        await self._maybe_hang()
        return [h.to_json() for h in self.service.holds_of(self.caller)]


def chain(tmp: Path, clock: Clock, rates: Mapping[str, int] | None = None) -> dict[str, Domain]:
    """A, B and C, each with a coordinator whose peers are the other two (in-process)."""
    domains = {n: make_domain(n, tmp, clock, (rates or {}).get(n, 10_000)) for n in CHAIN}
    for name, domain in domains.items():
        peers: dict[str, PeerClient] = {
            other: LocalPeer(domains[other].service, name) for other in NEIGHBOURS[name]
        }
        domain.coordinator = Coordinator(
            domain.service, peers, domain.intents, lambda d=domain: d.snapshot, 0.5, clock=clock
        )
    return domains


async def exchange_views(domains: Mapping[str, Domain], rounds: int = 2) -> None:
    """Every coordinator fetches its peers' views (twice: reach travels one hop a round)."""
    for _ in range(rounds):
        for domain in domains.values():
            assert domain.coordinator is not None
            await domain.coordinator.refresh_views()
