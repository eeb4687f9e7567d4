"""`POST /intents` with a `key_mode`: installed on real agents with the qkdsdn-node key_mode
leaf on every node of the path; an unknown mode is refused naming the field, nothing changed,
and the refusal audited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from common.audit import AuditLog, read_log
from common.config import Address
from controller.api_token import ApiRole, ApiTokens
from controller.rest import api_server
from lab.launcher import free_ports
from lab.plan import controller_role_tokens
from tests.contract.test_controller import app_of, chain_plan, controller_for, entries, until
from tests.harness.agents import running_agents


def test_an_intent_posted_with_a_key_mode_carries_it_to_every_node_and_a_bad_one_is_400(
    tmp_path: Path,
) -> None:
    plan = chain_plan(tmp_path, ["n1", "n2", "n3"])
    [port] = free_ports(1)
    files = controller_role_tokens(plan.controller_token_file)
    tokens = ApiTokens.from_files({ApiRole.named(r): Path(p) for r, p in files.items()})
    operator = {"Authorization": "Bearer " + Path(files["operator"]).read_text().strip()}
    log = tmp_path / "controller-audit.jsonl"
    audit = AuditLog("controller", log)
    body = {"src": "n1", "dst": "n3", "server_app_id": "a", "client_app_ids": ["b"]}

    async def scenario() -> None:
        async with running_agents(plan) as agents, controller_for(plan) as controller:
            server = api_server(controller, Address("127.0.0.1", port), tokens, audit)
            serving = asyncio.create_task(server.serve())
            await until(lambda: server.started, "the API")
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=operator
                ) as client:
                    bad = await client.post("/intents", json={**body, "key_mode": "hybrid"})
                    assert bad.status_code == 400, bad.text
                    detail = bad.json()["detail"]
                    assert "key_mode" in detail and "hybrid-either" in detail, detail
                    assert controller.intents() == []
                    assert all(entries(h)[1] == set() for h in agents.values())

                    made = await client.post("/intents", json={**body, "key_mode": "pqc-only"})
                    assert made.status_code == 200, made.text
                    assert made.json()["key_mode"] == "pqc-only"
                    # pqc-only needs no QKD path: the key mode still goes into the tree
                    made = await client.post("/intents", json={**body, "key_mode": "hybrid-strict"})
                    assert made.json()["state"] == "INSTALLED", made.json()
                    intent_id = made.json()["intent_id"]
                    for name in ("n1", "n2", "n3"):
                        app = app_of(agents[name], intent_id)
                        assert app["qkdsdn-node:key_mode"] == "hybrid-strict", (name, app)
                    listed = (await client.get(f"/intents/{intent_id}")).json()
                    assert listed["key_mode"] == "hybrid-strict"
                    # without key_mode: the YANG default, as before
                    plain = await client.post(
                        "/intents", json={**body, "server_app_id": "c", "client_app_ids": ["d"]}
                    )
                    assert plain.json()["key_mode"] == "qkd-preferred"
            finally:
                server.should_exit = True
                await serving

    asyncio.run(scenario())
    refused = [e for e in read_log(log) if e.outcome == "refused"]
    assert [(e.action, e.detail.split(" ")[0]) for e in refused] == [("intent.install", "key_mode")]
