"""Two domains A and B meeting at two border sites (a_b1|b_a1 and a_b2|b_a2), in memory:
app-a at A's `alphainner`, app-b at B's `betainner`, each border one link away from them;
a link can be cut (the intents on it re-routed, or failed) as the topology service would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from common.audit import AuditLog
from controller.config import DomainConfig, PeerDomain
from controller.intents.service import IntentService
from controller.interdomain.coordinator import Coordinator, PeerClient
from controller.interdomain.service import DomainService
from controller.model import KeyRequest, QoS, TopologySnapshot
from controller.paths import FewestHops
from controller.topology.synthetic import snapshot_from_graph
from tests.harness.domains import Clock, LocalPeer
from tests.unit.test_intents_service import FakeDevices
from yang.model import KeyMode

SHAPE = {
    "A": ("alphainner", {"a_b1": "b_a1", "a_b2": "b_a2"}, "B", {"app-a": "alphainner"}),
    "B": ("betainner", {"b_a1": "a_b1", "b_a2": "a_b2"}, "A", {"app-b": "betainner"}),
}


@dataclass
class Side:
    name: str
    graph: nx.Graph
    snapshot: TopologySnapshot
    ids: dict[str, str]
    intents: IntentService
    service: DomainService
    coordinator: Coordinator | None = None

    def live(self) -> list[str]:
        return [
            h.id
            for h in self.service.book.all()
            if h.state.value in ("reserved", "committing", "committed")
        ]

    def ends(self, ident: str) -> tuple[str, str]:
        intent = self.intents.get(ident)
        assert intent.path is not None, intent
        return (
            self.snapshot.name_of(intent.path.nodes[0]),
            self.snapshot.name_of(intent.path.nodes[-1]),
        )

    async def cut(self, a: str, b: str) -> None:
        """The link a–b goes down: gone from the topology, its intents re-routed or failed."""
        link = next(
            lid
            for lid, link in self.snapshot.links.items()
            if {link.a, link.b} == {self.ids[a], self.ids[b]}
        )
        self.graph.remove_edge(a, b)
        self.snapshot, _ = snapshot_from_graph(self.graph, rate=lambda x, y, d: 10_000)
        await self.intents.reroute_link(link, f"link {a}–{b} down")

    def topology(self) -> TopologySnapshot:
        return self.snapshot

    def coord(self) -> Coordinator:
        assert self.coordinator is not None
        return self.coordinator


def config(name: str, key_modes: tuple[str, ...] = ("qkd-only", "qkd-preferred")) -> DomainConfig:
    _, partners, peer, saes = SHAPE[name]
    peers = (PeerDomain(peer, f"http://{peer}.invalid", Path("-"), Path("-"), key_modes=key_modes),)
    return DomainConfig(
        name,
        {node: peer for node in partners},
        saes,
        peers,
        10.0,
        0.5,
        1.0,
        partners,
    )


def two_borders(
    tmp: Path, clock: Clock, key_modes: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Side]:
    sides: dict[str, Side] = {}
    for name, (inner, partners, _, _) in SHAPE.items():
        graph = nx.Graph([(inner, border) for border in partners])
        snapshot, ids = snapshot_from_graph(graph, rate=lambda a, b, d: 10_000)
        devices = FakeDevices({i: n for n, i in ids.items()})
        side = Side(name, graph, snapshot, ids, None, None)  # type: ignore[arg-type]
        side.intents = IntentService(side.topology, devices, FewestHops())
        side.service = DomainService(
            config(name, *(() if key_modes is None else (key_modes[name],))),
            side.topology,
            side.intents,
            AuditLog(f"controller:{name}", tmp / f"audit-{name}.jsonl"),
            clock,
        )
        sides[name] = side
    for name, side in sides.items():
        other = "B" if name == "A" else "A"
        peers: dict[str, PeerClient] = {other: LocalPeer(sides[other].service, name)}
        side.coordinator = Coordinator(
            side.service, peers, side.intents, side.topology, 0.5, clock=clock
        )
    return sides


def a_to_b(a: Side, via: str = "a_b1", mode: KeyMode = KeyMode.QKD_ONLY) -> KeyRequest:
    """app-a's request as its key manager registers it: toward the border its map names."""
    return KeyRequest(
        a.ids["alphainner"], a.ids[via], "app-a", ("app-b",), QoS(2000, 2000), key_mode=mode
    )


async def views(sides: dict[str, Side]) -> None:
    for side in sides.values():
        await side.coord().refresh_views()
