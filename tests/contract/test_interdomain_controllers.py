"""Three real controllers (API servers on loopback, each managing its own real agents over
NETCONF) run the two-phase protocol for an application in domain A and one in domain C; B's
controller learns nothing of A's internals; the `/interdomain/*` routes authenticate by role."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from agents.main import AgentHandle
from agents.notifications import AppRequest
from common.audit import AuditLog, read_log
from common.config import Address
from controller.api import Controller
from controller.api_token import ApiRole, ApiTokens, load_api_token
from controller.config import DomainConfig, PeerDomain
from controller.interdomain.client import HttpPeer
from controller.interdomain.runtime import Interdomain, accepted_tokens
from controller.interdomain.view import ViewError
from controller.model import IntentState
from controller.rest import api_server
from lab.launcher import free_ports
from lab.plan import LabPlan
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import controller_config_of

T = TypeVar("T")
DEADLINE_S = 30.0
NODE = "etsi-qkd-sdn-node:qkd_node"
DOMAINS: Mapping[str, tuple[list[str], dict[str, str], dict[str, str]]] = {
    "A": (["alphainner", "a_b"], {"a_b": "B"}, {"app-a": "alphainner", "app-a2": "alphainner"}),
    "B": (["b_a", "betamiddle", "b_c"], {"b_a": "A", "b_c": "C"}, {"app-b1": "betamiddle"}),
    "C": (["c_b", "gammainner"], {"c_b": "B"}, {"app-c": "gammainner"}),
}
C_CAP_FOR_A = 1000  # C lets A's requests reserve at most this much


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def entries(handle: AgentHandle) -> set[str]:
    """VIRT link ids and app ids in the node's running configuration."""
    body = handle.datastore.running_json().get(NODE, {})
    links = body.get("qkd_links", {}).get("qkd_link", [])
    apps = body.get("qkd_applications", {}).get("qkd_app", [])
    virt = {x["qkdl_id"] for x in links if str(x.get("qkdl_type", "")).endswith("VIRT")}
    return virt | {a["app_id"] for a in apps}


@dataclass
class Running:
    name: str
    controller: Controller
    interdomain: Interdomain
    url: str
    tokens: dict[str, str]  # viewer, operator, and "peer:X" -> what X sends here
    audit: Path

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def three_domain_plan(tmp_path: Path) -> LabPlan:
    nodes = [n for spec in DOMAINS.values() for n in spec[0]]
    links = [pair for spec in DOMAINS.values() for pair in itertools.pairwise(spec[0])]
    return make_test_plan(tmp_path, nodes, links)


def write_token(path: Path) -> str:
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    return value


@asynccontextmanager
async def three_controllers(plan: LabPlan, tmp_path: Path) -> AsyncIterator[dict[str, Running]]:
    ports = dict(zip(DOMAINS, free_ports(len(DOMAINS)), strict=True))
    secrets_dir = tmp_path / "domain-secrets"
    secrets_dir.mkdir()
    peer_token = {
        (x, y): write_token(secrets_dir / f"peer-{x}-to-{y}")
        for x, y in itertools.permutations(DOMAINS, 2)
    }
    base = controller_config_of(plan)
    async with AsyncExitStack() as stack:
        running: dict[str, Running] = {}
        for name, (nodes, borders, saes) in DOMAINS.items():
            peers = tuple(
                PeerDomain(
                    other,
                    f"http://127.0.0.1:{ports[other]}",
                    secrets_dir / f"peer-{name}-to-{other}",
                    secrets_dir / f"peer-{other}-to-{name}",
                    rate_cap_bps=C_CAP_FOR_A if (name, other) == ("C", "A") else 1_000_000,
                )
                for other in DOMAINS
                if other != name
            )
            domain = DomainConfig(name, borders, saes, peers, 20.0, 5.0, 0.2)  # a busy machine
            config = replace(
                base, nodes=tuple(n for n in base.nodes if n.name in nodes), domain=domain
            )
            controller = Controller.from_config(config, poll_interval=30.0, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            stack.push_async_callback(controller.stop)
            audit = tmp_path / f"audit-{name}.jsonl"
            log = AuditLog(f"controller:{name}", audit)
            interdomain = Interdomain.of(domain, controller, log)
            roles = {r: write_token(secrets_dir / f"{name}-{r}") for r in ("viewer", "operator")}
            tokens = ApiTokens.from_files(
                {ApiRole.named(r): secrets_dir / f"{name}-{r}" for r in roles}
            ).with_peers(accepted_tokens(domain))
            server = api_server(
                controller,
                Address("127.0.0.1", ports[name]),
                tokens,
                log,
                None,
                interdomain=interdomain.service,
            )
            serving = asyncio.create_task(server.serve())

            async def stop(
                server: Any = server, serving: Any = serving, i: Any = interdomain
            ) -> None:
                server.should_exit = True
                await serving
                await i.stop()

            stack.push_async_callback(stop)
            await until(lambda s=server: bool(s.started), f"the API of {name}")
            interdomain.start()
            known = dict(roles) | {f"peer:{o}": peer_token[o, name] for o in DOMAINS if o != name}
            running[name] = Running(
                name, controller, interdomain, f"http://127.0.0.1:{ports[name]}", known, audit
            )
        await until(
            lambda: running["A"].interdomain.service.view().reach.get("app-c") == ("B", "C"),
            "A learns from B's view that C serves app-c",
        )
        yield running


def installed(running: Running, master: str) -> list[str]:
    return [
        i.intent_id
        for i in running.controller.intents()
        if i.state is IntentState.INSTALLED and i.request.server_app_id == master
    ]


def test_an_app_in_a_gets_a_segment_in_every_domain_and_b_knows_nothing_of_a(
    tmp_path: Path,
) -> None:
    plan = three_domain_plan(tmp_path)

    async def scenario() -> None:
        async with running_agents(plan) as agents, three_controllers(plan, tmp_path) as domains:
            a, b, c = domains["A"], domains["B"], domains["C"]
            ok, message = agents["alphainner"].node.register_application(
                AppRequest(
                    "app-a",
                    ("app-c",),
                    plan.node("alphainner").qkdn_id,
                    plan.node("a_b").qkdn_id,
                    min_bandwidth=100,
                    max_bandwidth=200,
                )
            )
            assert ok, message
            await until(lambda: all(installed(d, "app-a") for d in domains.values()), "3 segments")
            [ident] = installed(a, "app-a")
            assert installed(b, "app-a") == installed(c, "app-a") == [ident]
            for node in ("alphainner", "a_b", "b_a", "betamiddle", "b_c", "c_b", "gammainner"):
                assert ident in entries(agents[node]), node
            segment = b.controller.intent_service.get(ident)
            assert segment.request.client_app_ids == ("app-c",) and segment.bandwidth == 200
            assert [
                (e.who, e.action, e.outcome) for e in read_log(b.audit) if e.target == ident
            ] == [
                ("peer:A", "interdomain.reserve", "ok"),
                ("peer:A", "interdomain.commit", "ok"),
            ]

            # B's controller holds nothing of A's internals, in its state or its answers
            secrets_of_a = ["alphainner"] + [plan.node(n).qkdn_id for n in DOMAINS["A"][0]]
            secrets_of_a += [
                link.qkdl_id for link in plan.links if {link.a, link.b} <= set(DOMAINS["A"][0])
            ]
            assert len(secrets_of_a) == 4  # a name, two node ids, a link id
            async with httpx.AsyncClient(base_url=b.url) as http:
                answers = [
                    (await http.get("/interdomain/view", headers=b.bearer("peer:A"))).text,
                    (await http.get("/interdomain/view", headers=b.bearer("viewer"))).text,
                    (await http.get("/interdomain/reservations", headers=b.bearer("viewer"))).text,
                ]
                for path in ("/status", "/topology", "/intents", f"/intents/{ident}"):
                    response = await http.get(path, headers=b.bearer("viewer"))
                    assert response.status_code == 200, path
                    answers.append(response.text)
            state = json.dumps(
                {name: view.to_json() for name, view in b.interdomain.service.peer_views.items()}
            )
            state += repr(b.interdomain.service.book.all()) + repr(b.controller.intents())
            state += repr(b.controller.topology())
            for secret in secrets_of_a:
                for text in [*answers, state]:
                    assert secret not in text, secret

            # a second request over C's rate cap for A: refused, nothing held anywhere
            ok, _ = agents["alphainner"].node.register_application(
                AppRequest(
                    "app-a2",
                    ("app-c",),
                    plan.node("alphainner").qkdn_id,
                    plan.node("a_b").qkdn_id,
                    min_bandwidth=C_CAP_FOR_A,
                    max_bandwidth=C_CAP_FOR_A,
                )
            )
            assert ok
            await until(
                lambda: any(i.state is IntentState.REJECTED for i in a.controller.intents()),
                "the refusal at A",
            )
            [refused] = [i for i in a.controller.intents() if i.state is IntentState.REJECTED]
            assert "domain C refused the reserve (403): rate cap" in refused.reason
            for domain in (a, b, c):
                live = [h for h in domain.interdomain.service.book.all() if h.id != ident]
                assert all(h.state.value == "released" for h in live), domain.name
                assert installed(domain, "app-a2") == []

            # withdrawing the origin's intent releases B's and C's segments
            async with httpx.AsyncClient(base_url=a.url, headers=a.bearer("operator")) as http:
                assert (await http.delete(f"/intents/{ident}")).status_code == 200
            await until(lambda: not installed(b, "app-a") and not installed(c, "app-a"), "releases")
            for node in ("b_a", "betamiddle", "b_c", "c_b", "gammainner"):
                assert ident not in entries(agents[node]), node
            # the refused request is retried as a whole now that C's cap for A has room
            await until(lambda: all(installed(d, "app-a2") for d in domains.values()), "the retry")
            assert ("peer:A", "interdomain.release", "ok") in [
                (e.who, e.action, e.outcome) for e in read_log(c.audit)
            ]

    run(scenario())


def test_interdomain_routes_take_a_peer_token_only_and_name_bad_fields(tmp_path: Path) -> None:
    plan = three_domain_plan(tmp_path)

    async def scenario() -> None:
        async with running_agents(plan), three_controllers(plan, tmp_path) as domains:
            b = domains["B"]
            body = {
                "id": "6f1e0a4c-1111-4222-8333-944455556666",
                "master_sae": "app-a",
                "slave_sae": "app-c",
                "ingress": "b_a",
                "egress": "b_c",
                "rate_bps": 100,
                "key_mode": "qkd-only",
                "origin": "A",
            }
            async with httpx.AsyncClient(base_url=b.url) as http:
                wrong = {"Authorization": "Bearer not-a-token-of-anyone-here"}
                assert (await http.get("/interdomain/view", headers=wrong)).status_code == 401
                assert (await http.get("/interdomain/view")).status_code == 401
                peer = b.bearer("peer:A")
                assert (await http.get("/status", headers=peer)).status_code == 403
                assert (await http.get("/intents", headers=peer)).status_code == 403
                viewer = b.bearer("viewer")
                assert (await http.get("/interdomain/view", headers=viewer)).status_code == 200
                refused = await http.post("/interdomain/reservations", json=body, headers=viewer)
                assert refused.status_code == 403
                operator = b.bearer("operator")
                refused = await http.post("/interdomain/reservations", json=body, headers=operator)
                assert refused.status_code == 403
                bad = await http.post(
                    "/interdomain/reservations", json=body | {"rate_bps": -5}, headers=peer
                )
                assert bad.status_code == 400 and bad.json()["detail"].startswith("rate_bps")
                own_view = (await http.get("/interdomain/view", headers=viewer)).json()
                pushed = await http.post("/interdomain/view", json=own_view, headers=viewer)
                assert pushed.status_code == 403  # only a peer pushes, and only its own view
                posing = await http.post("/interdomain/view", json=own_view, headers=peer)
                assert posing.status_code == 403 and "only send its own view" in posing.text
                a_view = domains["A"].interdomain.service.view().to_json()
                accepted = await http.post("/interdomain/view", json=a_view, headers=peer)
                assert accepted.status_code == 200
                bad_view = await http.post(
                    "/interdomain/view", json=a_view | {"saes": "app-a"}, headers=peer
                )
                assert bad_view.status_code == 400 and "saes" in bad_view.json()["detail"]
                garbage = await http.post(
                    "/interdomain/reservations", content=b"{not json", headers=peer
                )
                assert garbage.status_code == 400
                made = await http.post("/interdomain/reservations", json=body, headers=peer)
                assert made.status_code == 201 and made.json()["state"] == "reserved"
                again = await http.post("/interdomain/reservations", json=body, headers=peer)
                assert again.status_code == 201 and again.json() == made.json()
                # C cannot see, commit or release A's reservation
                as_c = b.bearer("peer:C")
                mine = (await http.get("/interdomain/reservations", headers=as_c)).json()
                assert mine == []
                path = f"/interdomain/reservations/{body['id']}"
                assert (await http.post(path + "/commit", headers=as_c)).status_code == 404
                assert (await http.delete(path, headers=as_c)).status_code == 404
                gone = await http.delete(path, headers=peer)
                assert gone.status_code == 200 and gone.json()["state"] == "released"
                assert (await http.delete(path, headers=peer)).status_code == 200
                unknown = "/interdomain/reservations/6f1e0a4c-0000-4222-8333-944455556666"
                assert (await http.delete(unknown, headers=peer)).status_code == 404
            refusals = [e for e in read_log(b.audit) if e.outcome == "refused"]
            assert {e.who for e in refusals} >= {"token:viewer", "peer:A", "peer:C"}

    run(scenario())


def test_a_peer_controller_that_accepts_but_never_answers_costs_one_timeout(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # reads nothing, answers nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        token = tmp_path / "token"
        write_token(token)
        peer = HttpPeer("C", f"http://127.0.0.1:{port}", load_api_token(token), 0.3)
        try:
            started = time.monotonic()
            answer = await peer.release("6f1e0a4c-0000-4222-8333-944455556666")
            assert answer.status == 0 and "did not answer" in answer.detail
            assert time.monotonic() - started < 2.0
            with pytest.raises(ViewError, match="did not answer"):
                await peer.view()
        finally:
            await peer.close()
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    run(scenario())
