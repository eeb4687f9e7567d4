"""The controller against real agents (NETCONF over SSH on 127.0.0.1, in-process agents):
discovery, install on a 3-hop path, all-or-none on a failing last node, re-route after a
link cut, application requests from a node, rebuild after a controller restart, HTTP API."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from ncclient import manager

from agents.main import AgentHandle
from agents.netconf.errors import ErrorTag, ErrorType, NetconfError
from agents.node import Site
from agents.notifications import AppRequest
from common.audit import AuditLog, read_log
from common.config import Address
from controller.api import Controller
from controller.api_token import ApiRole, ApiToken, ApiTokens, load_api_token
from controller.devices.session import NetconfSession
from controller.errors import DeviceUnavailable
from controller.model import IntentState, KeyRequest, LinkStatus, QoS
from controller.rest import api_server
from lab.cli import main as qkdsdn
from lab.configs import write_process_configs
from lab.launcher import free_ports
from lab.plan import LabPlan, controller_role_tokens
from tests.harness.agents import make_test_plan, running_agents, start_agent
from tests.harness.configs import addresses_from_plan, controller_from_plan
from yang.schema import Schema

T = TypeVar("T")
DEADLINE_S = 15.0
NODE = "etsi-qkd-sdn-node:qkd_node"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def entries(handle: AgentHandle) -> tuple[set[str], set[str]]:
    """(VIRT link ids, app ids) in the node's running configuration."""
    body = handle.datastore.running_json().get(NODE, {})
    links = body.get("qkd_links", {}).get("qkd_link", [])
    apps = body.get("qkd_applications", {}).get("qkd_app", [])
    virt = {x["qkdl_id"] for x in links if str(x.get("qkdl_type", "")).endswith("VIRT")}
    return virt, {a["app_id"] for a in apps}


def app_of(handle: AgentHandle, app_id: str) -> dict[str, Any]:
    body = handle.datastore.running_json()[NODE]
    [app] = [a for a in body["qkd_applications"]["qkd_app"] if a["app_id"] == app_id]
    return dict(app)


@asynccontextmanager
async def controller_for(plan: LabPlan, **options: Any) -> AsyncIterator[Controller]:
    options.setdefault("device_grace", 0.0)
    controller = controller_from_plan(plan, poll_interval=30.0, **options)
    await controller.start(connect_timeout=DEADLINE_S)
    try:
        yield controller
    finally:
        await controller.stop()


def chain_plan(
    tmp_path: Path, names: Sequence[str], extra: Sequence[tuple[str, str]] = ()
) -> LabPlan:
    links = [(a, b) for a, b in itertools.pairwise(names)] + list(extra)
    return make_test_plan(tmp_path, names, links)


def test_discovery_builds_the_topology_from_the_nodes(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"], [("n1", "n3")])

    async def scenario() -> None:
        async with running_agents(plan), controller_for(plan) as controller:
            snapshot = controller.topology()
            assert sorted(d.name for d in snapshot.devices.values()) == ["n1", "n2", "n3"]
            assert {d.device_id for d in snapshot.devices.values()} == {
                n.qkdn_id for n in plan.nodes
            }
            assert set(snapshot.links) == {link.qkdl_id for link in plan.links}
            for link in snapshot.links.values():
                assert link.status is LinkStatus.ACTIVE
                assert link.skr > 0 and 0 < link.eskr <= link.skr
                assert link.qber is not None and 0 < link.qber < 0.11
            assert all(up for _, _, up in controller.device_status())
            n1, n3 = snapshot.resolve("n1"), snapshot.resolve("n3")
            paths = controller.paths(n1, n3, k=3)
            assert [p.hops for p in paths] == [1, 2]

    run(scenario())


def test_install_on_a_three_hop_path_and_withdraw_exactly(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3", "n4"])

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            snap = controller.topology()
            request = KeyRequest(
                snap.resolve("n1"), snap.resolve("n4"), "app1", ("app2",), QoS(100, 500)
            )
            intent = await controller.install(request)
            assert intent.state is IntentState.INSTALLED, intent.reason
            assert intent.path is not None and intent.path.hops == 3
            assert intent.bandwidth == 500
            for name in ("n1", "n2", "n3", "n4"):
                assert entries(agents[name]) == ({intent.intent_id}, {intent.intent_id})
            middle = app_of(agents["n2"], intent.intent_id)
            assert middle["app_type"].endswith("INTERNAL")
            assert middle["qkdsdn-node:admission"]["state"] == "admitted"
            assert middle["qkdsdn-node:admission"]["path"] == list(intent.path.nodes)
            assert app_of(agents["n1"], intent.intent_id)["app_type"].endswith("CLIENT")
            await controller.withdraw(intent.intent_id)
            for name in ("n1", "n2", "n3", "n4"):
                assert entries(agents[name]) == (set(), set())

    run(scenario())


def test_a_veto_on_the_last_node_rolls_every_node_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            last = agents["n3"].node
            monkeypatch.setattr(last, "veto", lambda new_running: "injected: modules busy")
            snap = controller.topology()
            request = KeyRequest(snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",))
            intent = await controller.install(request)
            assert intent.state is IntentState.FAILED
            assert "n3" in intent.reason and "injected: modules busy" in intent.reason
            # nothing left but the failure record on the source node
            assert entries(agents["n1"]) == (set(), {intent.intent_id})
            assert (
                app_of(agents["n1"], intent.intent_id)["qkdsdn-node:admission"]["state"] == "failed"
            )
            assert entries(agents["n2"]) == (set(), set())
            assert entries(agents["n3"]) == (set(), set())
            assert controller.intent_service.reservations().by_intent == {}
            # the refused change was discarded and every lock given back: the next install,
            # once the node accepts again, goes through on the same sessions
            assert not any(agents[n].datastore.candidate_modified for n in ("n1", "n2", "n3"))
            monkeypatch.setattr(last, "veto", lambda new_running: None)
            again = await controller.install(request)
            assert again.state is IntentState.INSTALLED, again.reason

    run(scenario())


def test_an_edit_the_last_node_finds_invalid_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phase 1 validates on the nodes (edit-config test-then-set): a node refusing the edit
    stops the install before any commit."""
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            options: list[tuple[str, str]] = []

            def refuse(
                target: object, config: object, default: object, test: object, *_: object
            ) -> None:
                options.append((str(target), str(test)))
                raise NetconfError.of(
                    ErrorType.APPLICATION, ErrorTag.INVALID_VALUE, "injected: leafref fails"
                )

            monkeypatch.setattr(agents["n3"].datastore, "edit", refuse)
            snap = controller.topology()
            request = KeyRequest(snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",))
            intent = await controller.install(request)
            assert intent.state is IntentState.FAILED
            assert "nothing changed" in intent.reason and "injected: leafref" in intent.reason
            assert options == [("DatastoreName.CANDIDATE", "TestOption.TEST_THEN_SET")]
            assert entries(agents["n2"]) == (set(), set())
            assert entries(agents["n3"]) == (set(), set())
            for name in ("n1", "n2", "n3"):
                assert not agents[name].datastore.candidate_modified

    run(scenario())


def test_a_foreign_lock_on_the_last_node_changes_nothing(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])
    creds = plan.credentials
    password = Path(creds.password_file).read_text().strip()

    def hold_lock() -> Any:
        session = manager.connect(
            host="127.0.0.1",
            port=plan.node("n3").netconf_port,
            username=creds.netconf_username,
            password=password,
            hostkey_verify=False,
            allow_agent=False,
            look_for_keys=False,
        )
        session.lock(target="candidate")
        return session

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            other = await asyncio.to_thread(hold_lock)
            try:
                snap = controller.topology()
                request = KeyRequest(snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",))
                intent = await controller.install(request)
                assert intent.state is IntentState.FAILED
                assert "nothing changed" in intent.reason and "n3" in intent.reason
                assert entries(agents["n2"]) == (set(), set())
                assert entries(agents["n3"]) == (set(), set())
            finally:
                await asyncio.to_thread(other.close_session)

    run(scenario())


def test_link_cut_reroutes_the_intent(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"], [("n1", "n3")])

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            snap = controller.topology()
            n1, n3 = snap.resolve("n1"), snap.resolve("n3")
            intent = await controller.install(KeyRequest(n1, n3, "app1", ("app2",)))
            assert intent.path is not None and intent.path.hops == 1
            direct = intent.path.links[0]
            agents["n1"].node.set_link(direct, False)

            def moved() -> bool:
                current = controller.intent_service.get(intent.intent_id)
                return current.path is not None and current.path.hops == 2

            await until(moved, "the re-route over n2")
            await controller.settle()
            rerouted = controller.intent_service.get(intent.intent_id)
            assert rerouted.state is IntentState.INSTALLED
            assert "re-routed" in rerouted.reason
            for name in ("n1", "n2", "n3"):
                assert entries(agents[name]) == ({intent.intent_id}, {intent.intent_id})
            assert controller.topology().links[direct].status is not LinkStatus.ACTIVE

    run(scenario())


def test_application_request_from_a_node_is_admitted_and_visible_there(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            n1, n3 = plan.node("n1").qkdn_id, plan.node("n3").qkdn_id
            ok, message = agents["n1"].node.register_application(
                AppRequest("app1", ("app2",), n1, n3, min_bandwidth=100, max_bandwidth=200)
            )
            assert ok, message
            await until(lambda: bool(entries(agents["n1"])[1]), "the app on n1")
            await controller.settle()
            [intent] = controller.intents()
            assert intent.state is IntentState.INSTALLED
            app = app_of(agents["n1"], intent.intent_id)
            assert (app["server_app_id"], app["client_app_id"]) == ("app1", ["app2"])
            assert app["qkdsdn-node:admission"]["state"] == "admitted"
            # a request the network cannot carry is rejected, and the node is told why
            ok, _ = agents["n3"].node.register_application(
                AppRequest("app3", ("app4",), n3, n1, min_bandwidth=10_000_000)
            )
            assert ok
            await until(lambda: len(controller.intents()) == 2, "the second decision")
            await controller.settle()
            [rejected] = [i for i in controller.intents() if i.state is IntentState.REJECTED]
            record = app_of(agents["n3"], rejected.intent_id)["qkdsdn-node:admission"]
            assert record["state"] == "rejected" and "bit/s free" in record["reason"]

    run(scenario())


def test_a_restarted_controller_rebuilds_its_intents_from_the_nodes(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])

    async def scenario() -> None:
        async with running_agents(plan) as agents:
            async with controller_for(plan) as first:
                snap = first.topology()
                request = KeyRequest(
                    snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",), QoS(10, 300, 2)
                )
                installed = await first.install(request)
            async with controller_for(plan) as second:
                [rebuilt] = second.intents()
                assert rebuilt.intent_id == installed.intent_id
                assert rebuilt.state is IntentState.INSTALLED
                assert rebuilt.path == installed.path
                assert rebuilt.bandwidth == installed.bandwidth
                assert rebuilt.request.qos == installed.request.qos
                await second.withdraw(rebuilt.intent_id)
                for handle in agents.values():
                    assert entries(handle) == (set(), set())

    run(scenario())


def api_token(plan: LabPlan) -> ApiToken:
    return load_api_token(Path(plan.controller_token_file))


def test_http_api_serves_status_topology_paths_and_intents(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])
    [port] = free_ports(1)
    token = api_token(plan)

    async def scenario() -> None:
        async with running_agents(plan), controller_for(plan) as controller:
            server = api_server(controller, Address("127.0.0.1", port), token)
            serving = asyncio.create_task(server.serve())
            await until(lambda: server.started, "the API")
            base = f"http://127.0.0.1:{port}"
            bearer = {"Authorization": "Bearer " + token.value.decode()}
            try:
                async with httpx.AsyncClient(base_url=base, headers=bearer) as client:
                    status = (await client.get("/status")).json()
                    assert [d["connected"] for d in status["devices"]] == [True] * 3
                    topo = (await client.get("/topology")).json()
                    assert len(topo["links"]) == 2
                    paths = (await client.get("/paths", params={"a": "n1", "b": "n3"})).json()
                    assert paths["paths"][0]["nodes"] == ["n1", "n2", "n3"]
                    body = {"src": "n1", "dst": "n3", "server_app_id": "a", "client_app_ids": ["b"]}
                    made = (await client.post("/intents", json=body)).json()
                    assert made["state"] == "INSTALLED"
                    listed = (await client.get("/intents")).json()
                    assert [i["intent_id"] for i in listed] == [made["intent_id"]]
                    bad = await client.get("/paths", params={"a": "n1", "b": "nowhere"})
                    assert bad.status_code == 400 and "nowhere" in bad.json()["detail"]
                    gone = await client.delete(f"/intents/{made['intent_id']}")
                    assert gone.json()["state"] == "WITHDRAWN"
                    assert (await client.delete("/intents/unknown")).status_code == 404
            finally:
                server.should_exit = True
                await serving

    run(scenario())


def role_tokens(plan: LabPlan) -> dict[str, str]:
    return {
        role: Path(path).read_text().strip()
        for role, path in controller_role_tokens(plan.controller_token_file).items()
    }


def test_each_api_role_makes_its_calls_and_refusals_are_audited(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])
    [port] = free_ports(1)
    files = controller_role_tokens(plan.controller_token_file)
    tokens = ApiTokens.from_files({ApiRole.named(r): Path(p) for r, p in files.items()})
    secret = role_tokens(plan)
    audit = AuditLog("controller", tmp_path / "controller" / "audit.jsonl")

    def bearer(role: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + secret[role]}

    async def scenario() -> None:
        async with running_agents(plan), controller_for(plan) as controller:
            snap = controller.topology()
            installed = await controller.install(
                KeyRequest(snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",))
            )
            server = api_server(controller, Address("127.0.0.1", port), tokens, audit)
            serving = asyncio.create_task(server.serve())
            await until(lambda: server.started, "the API")
            target = f"/intents/{installed.intent_id}"
            body = {"src": "n1", "dst": "n3", "server_app_id": "a", "client_app_ids": ["b"]}
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    anonymous = await client.get("/intents")
                    assert anonymous.status_code == 401
                    assert anonymous.headers["www-authenticate"] == "Bearer"
                    assert "Bearer" in anonymous.json()["detail"]
                    wrong = {"Authorization": "Bearer " + "x" * 40}
                    assert (await client.delete(target, headers=wrong)).status_code == 401
                    basic = {"Authorization": "Basic " + secret["admin"]}
                    assert (await client.delete(target, headers=basic)).status_code == 401
                    # a viewer reads (and asks what-if) but changes nothing
                    listed = await client.get("/intents", headers=bearer("viewer"))
                    assert [i["state"] for i in listed.json()] == ["INSTALLED"]
                    admit = await client.post("/admit", json=body, headers=bearer("viewer"))
                    assert admit.status_code == 200
                    refused = await client.delete(target, headers=bearer("viewer"))
                    assert refused.status_code == 403
                    assert "viewer" in refused.json()["detail"]
                    assert "operator" in refused.json()["detail"]
                    assert controller.intent_service.get(installed.intent_id).state is (
                        IntentState.INSTALLED
                    )
                    # an operator withdraws but may not set the policy; an admin may
                    policy = {"policy": "key-aware"}
                    low = await client.put("/policy", json=policy, headers=bearer("operator"))
                    assert low.status_code == 403 and "admin" in low.json()["detail"]
                    assert controller.intent_service.policy.name == "fewest-hops"
                    gone = await client.delete(target, headers=bearer("operator"))
                    assert gone.status_code == 200 and gone.json()["state"] == "WITHDRAWN"
                    done = await client.put("/policy", json=policy, headers=bearer("admin"))
                    assert done.status_code == 200
                    assert controller.intent_service.policy.name == "key-aware"
                    me = await client.get("/whoami", headers=bearer("operator"))
                    assert me.json() == {"name": "token:operator", "role": "operator"}
            finally:
                server.should_exit = True
                await serving

    run(scenario())
    logged = [
        (e.who, e.role, e.action, e.outcome) for e in read_log(tmp_path / "controller/audit.jsonl")
    ]
    assert logged == [
        ("anonymous", "-", "intent.withdraw", "refused"),
        ("anonymous", "-", "intent.withdraw", "refused"),
        ("token:viewer", "viewer", "intent.withdraw", "refused"),
        ("token:operator", "operator", "policy.set", "refused"),
        ("token:operator", "operator", "intent.withdraw", "ok"),
        ("token:admin", "admin", "policy.set", "ok"),
    ]


def test_cli_withdraw_sends_the_token_of_the_controller_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2"])
    [port] = free_ports(1)
    plan = replace(plan, controller=replace(plan.controller, api_port=port))
    plan.save(tmp_path / "plan.json")
    write_process_configs(plan)  # controller.yaml names the API and its api_token_file
    url = ["--url", f"http://127.0.0.1:{port}"]

    async def scenario() -> None:
        async with running_agents(plan), controller_for(plan) as controller:
            snap = controller.topology()
            installed = await controller.install(
                KeyRequest(snap.resolve("n1"), snap.resolve("n2"), "app1", ("app2",))
            )
            server = api_server(controller, Address("127.0.0.1", port), api_token(plan))
            serving = asyncio.create_task(server.serve())
            await until(lambda: server.started, "the API")
            withdraw = ["controller", "withdraw", installed.intent_id]
            try:
                with pytest.raises(SystemExit, match="Bearer"):  # --url alone: no token
                    await asyncio.to_thread(qkdsdn, [*withdraw, *url])
                assert controller.intent_service.get(installed.intent_id).state is (
                    IntentState.INSTALLED
                )
                plan_args = ["--state-dir", str(tmp_path)]
                assert await asyncio.to_thread(qkdsdn, [*withdraw, *plan_args]) == 0
                assert controller.intent_service.get(installed.intent_id).state is (
                    IntentState.WITHDRAWN
                )
            finally:
                server.should_exit = True
                await serving

    run(scenario())
    assert "WITHDRAWN" in capsys.readouterr().out


def test_a_lost_node_is_routed_around_and_cleaned_when_it_returns(tmp_path: Path) -> None:
    plan = make_test_plan(
        tmp_path, ["n1", "n2", "n3", "n4"], [("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n4", "n1")]
    )
    site = Site()

    async def scenario() -> None:
        async with running_agents(plan, site=site) as agents, controller_for(plan) as controller:
            snap = controller.topology()
            n1, n3 = snap.resolve("n1"), snap.resolve("n3")
            free = await controller.install(KeyRequest(n1, n3, "app1", ("app2",)))
            assert free.path is not None and free.path.hops == 2
            via = snap.name_of(free.path.nodes[1])
            other = "n4" if via == "n2" else "n2"
            pinned = await controller.install(
                KeyRequest(n1, n3, "app3", ("app4",), forced_path=free.path.nodes)
            )
            assert pinned.state is IntentState.INSTALLED
            await agents[via].stop_servers()
            await until(
                lambda: not controller.topology().devices[snap.resolve(via)].available, "lost"
            )
            await controller.settle()
            moved = controller.intent_service.get(free.intent_id)
            assert moved.path is not None and snap.name_of(moved.path.nodes[1]) == other
            failed = controller.intent_service.get(pinned.intent_id)
            assert failed.state is IntentState.FAILED and via in failed.reason
            assert entries(agents[other]) == ({free.intent_id}, {free.intent_id})
            # the node returns with what it held in its persisted running
            agents[via] = await start_agent(plan, via, site, Schema.default())
            assert free.intent_id in entries(agents[via])[1]
            await until(
                lambda: controller.topology().devices[snap.resolve(via)].available, "back", 20
            )
            await until(
                lambda: (
                    controller.intent_service.get(pinned.intent_id).state is IntentState.INSTALLED
                ),
                "the pinned association installed again",
            )
            await until(lambda: free.intent_id not in entries(agents[via])[1], "stale entries gone")
            await controller.settle()
            both = {free.intent_id, pinned.intent_id}
            assert entries(agents["n1"]) == (both, both)
            assert entries(agents[via]) == ({pinned.intent_id}, {pinned.intent_id})
            assert entries(agents[other]) == ({free.intent_id}, {free.intent_id})
            await agents[via].stop_servers()

    run(scenario())


def test_cli_prints_tables_from_a_running_controller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])
    [port] = free_ports(1)

    async def scenario() -> None:
        async with running_agents(plan), controller_for(plan) as controller:
            server = api_server(controller, Address("127.0.0.1", port), api_token(plan))
            serving = asyncio.create_task(server.serve())
            await until(lambda: server.started, "the API")
            url = ["--url", f"http://127.0.0.1:{port}", "--token-file", plan.controller_token_file]
            try:
                snap = controller.topology()
                await controller.install(
                    KeyRequest(snap.resolve("n1"), snap.resolve("n3"), "app1", ("app2",))
                )
                for command in (["status"], ["topology"], ["paths", "n1", "n3"], ["intents"]):
                    code = await asyncio.to_thread(qkdsdn, ["controller", *command, *url])
                    assert code == 0
            finally:
                server.should_exit = True
                await serving

    run(scenario())
    out = capsys.readouterr().out
    assert "connected" in out and "n1" in out
    assert ("ACTIVE" in out and "n1 – n2" in out) or "n2 – n1" in out
    assert "n1 → n2 → n3" in out
    assert "INSTALLED" in out and "app1 → app2" in out


def test_an_agent_with_another_host_key_is_refused(tmp_path: Path) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2"])
    [address, _] = addresses_from_plan(plan)
    other = make_test_plan(tmp_path / "other", ["x"], [])
    [wrong] = addresses_from_plan(other)

    async def scenario() -> None:
        async with running_agents(plan):
            ok = await asyncio.to_thread(NetconfSession.open, address)
            # blocking: in a thread, since the agent answering <close-session> runs on this loop
            await asyncio.to_thread(ok.close)
            pinned_elsewhere = replace(address, host_key_b64=wrong.host_key_b64)
            with pytest.raises(DeviceUnavailable, match="host key"):
                await asyncio.to_thread(NetconfSession.open, pinned_elsewhere)

    run(scenario())
