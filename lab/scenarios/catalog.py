"""The scenarios `qkdsdn lab run --scenario NAME` knows."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: str  # a packaged topology name or a path
    description: str
    pairs: tuple[tuple[str, str], ...]  # (master SAE, slave SAE)
    requests: int = 6  # enc_keys/dec_keys rounds per pair
    forced_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="paper",
            topology="triangle",
            description=(
                "The reference experiment: app1 at qnode1 gets keys for app2 at qnode3 over the "
                "indirect path qnode1 → qnode2 → qnode3 (qnode2 is the trusted node)."
            ),
            pairs=(("app1", "app2"),),
            forced_paths={"app1>app2": ("qnode1", "qnode2", "qnode3")},
        ),
        Scenario(
            name="direct",
            topology="triangle",
            description="The triangle with the controller's own choice: the direct link.",
            pairs=(("app1", "app2"),),
        ),
        Scenario(
            name="chain",
            topology="chain10",
            description="Ten hops: nine trusted nodes relay every key.",
            pairs=(("app-west", "app-east"),),
            requests=4,
        ),
        Scenario(
            name="outage",
            topology="triangle-outage",
            description=(
                "Three pairs from qnode1 to qnode3 in qkd-preferred, qkd-only and hybrid-either;"
                " both paths between the nodes are cut, then restored (docs/pqc.md)."
            ),
            pairs=(("app1", "app2"), ("app3", "app4"), ("app5", "app6")),
        ),
        Scenario(
            name="metro",
            topology="metro-madrid",
            description="The 9-node metro network with several application pairs at once.",
            pairs=(),  # filled from the topology: consecutive apps pair up
            requests=3,
        ),
        Scenario(
            name="surge",
            topology="metro-surge",
            description=(
                "Poisson key requests on a 9-node metro twin; a spur loses 90 % of its key rate "
                "and a second application starts consuming hard; static vs data-driven control "
                "in the same run (lab/scenarios/surge.py)."
            ),
            pairs=(
                ("hospital-a", "hospital-b"),
                ("bank-hq", "bank-dc"),
                ("office-central", "campus-upm"),
            ),
        ),
        Scenario(
            name="domains",
            topology="three-domains",
            description=(
                "Three operators' domains in a chain A – B – C: app-a (A) gets keys with app-c (C)"
                " through two trusted border sites (ETSI 020 hand-offs), then the same network as"
                " one domain in the same run (lab/scenarios/domains.py)."
            ),
            pairs=(("app-a", "app-c"),),
            requests=8,
        ),
    )
}
