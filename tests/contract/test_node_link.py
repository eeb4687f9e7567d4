"""NodeLink over real gRPC and NETCONF (ncclient) on 127.0.0.1: config feed, registrations."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import ncclient.transport.session
import pytest
from ncclient import manager
from ncclient.operations import RPCError

from common.protos import node_link_pb2 as pb
from common.protos import node_link_pb2_grpc as pb_grpc
from lab.plan import LabPlan
from tests.harness.agents import agent_channel, km_tls, make_test_plan, running_agents

ncclient.transport.session.TICK = 0.001

VIRT_ID = "3f0c9a8e-2b1d-4c6e-9f7a-5d4e3c2b1a09"


def connect(plan: LabPlan, port: int) -> Any:
    return manager.connect(
        host="127.0.0.1",
        port=port,
        username=plan.credentials.netconf_username,
        key_filename=plan.credentials.client_key,
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )


def virt_config(next_hop: str) -> str:
    return f"""<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"
            xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types">
    <qkd_links><qkd_link>
      <qkdl_id>{VIRT_ID}</qkdl_id><qkdl_type>t:VIRT</qkdl_type>
      <virt_next_hop>{next_hop}</virt_next_hop><virt_bandwidth>1000</virt_bandwidth>
    </qkd_link></qkd_links>
  </qkd_node></config>"""


def test_watch_config_streams_running_now_and_after_a_commit(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    b_id, c_id = plan.node("b").qkdn_id, plan.node("c").qkdn_id

    def edit(port: int) -> str:
        with connect(plan, port) as session:
            with pytest.raises(RPCError, match="not a neighbour"):
                session.edit_config(target="running", config=virt_config(c_id))
            session.edit_config(target="candidate", config=virt_config(b_id))
            session.commit()
            return str(session.get_config(source="running").data_xml)

    async def scenario() -> None:
        async with running_agents(plan, ["a", "b"], plan_ports=False) as agents:
            a = agents["a"]
            async with agent_channel(a.grpc_address, km_tls(plan, "a")) as channel:
                stub: Any = pb_grpc.NodeLinkStub(channel)
                stream = stub.WatchConfig(pb.WatchRequest(km_id="km-a"))
                first = await stream.read()
                doc = json.loads(first.qkd_node_json)["etsi-qkd-sdn-node:qkd_node"]
                assert doc["qkdn_id"] == plan.node("a").qkdn_id
                assert "qkdsdn-node:key_manager" in doc
                running = await asyncio.to_thread(edit, a.netconf_port)
                assert VIRT_ID in running
                update = await asyncio.wait_for(stream.read(), 10)
                assert update.revision == first.revision + 1
                links = json.loads(update.qkd_node_json)["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]
                virt = [x for x in links["qkd_link"] if x["qkdl_id"] == VIRT_ID]
                assert virt and virt[0]["virt_next_hop"] == [b_id]
                stream.cancel()
        persisted = Path(plan.state_dir) / "agents" / "a" / "running.xml"
        assert VIRT_ID in persisted.read_text()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_register_application_reaches_subscribed_netconf_sessions(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    b_id = plan.node("b").qkdn_id

    async def scenario() -> None:
        async with running_agents(plan, ["a"], plan_ports=False, persist=False) as agents:
            a = agents["a"]
            session = await asyncio.to_thread(connect, plan, a.netconf_port)
            try:
                await asyncio.to_thread(session.create_subscription)
                async with agent_channel(a.grpc_address, km_tls(plan, "a")) as channel:
                    stub: Any = pb_grpc.NodeLinkStub(channel)
                    request = pb.AppRegistration(
                        server_app_id="sae-1",
                        client_app_id=["sae-2"],
                        remote_qkdn_id=b_id,
                        app_type="CLIENT",
                        min_bandwidth=512,
                        max_bandwidth=1024,
                    )
                    reply = await stub.RegisterApplication(request)
                    assert reply.accepted, reply.message
                    again = await stub.RegisterApplication(request)
                    assert again.accepted and "already registered" in again.message
                    bad = await stub.RegisterApplication(pb.AppRegistration(server_app_id="x"))
                    assert not bad.accepted and "client_app_id" in bad.message
                notification = await asyncio.to_thread(session.take_notification, True, 10)
                assert notification is not None
                xml = notification.notification_xml
                assert "sdqkdn_application_new" in xml and "urn:qkdsdn:yang:qkdsdn-node" in xml
                assert b_id in xml and "<max_bandwidth>1024</max_bandwidth>" in xml
                assert await asyncio.to_thread(session.take_notification, False) is None
            finally:
                await asyncio.to_thread(session.close_session)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_persisted_running_the_node_refuses_is_set_aside(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    persisted = Path(plan.state_dir) / "agents" / "a" / "running.xml"
    persisted.parent.mkdir(parents=True)
    persisted.write_text("<qkd_node xmlns='urn:etsi:qkd:yang:etsi-qkd-node'><broken/></qkd_node>")

    async def scenario() -> None:
        async with running_agents(plan, ["a"], plan_ports=False) as agents:
            running = agents["a"].datastore.running_json()
            assert running["etsi-qkd-sdn-node:qkd_node"]["qkdn_id"] == plan.node("a").qkdn_id

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert "<broken/>" in persisted.with_suffix(".stale.xml").read_text()
    assert plan.links[0].qkdl_id in persisted.read_text()
