"""ETSI 004 module side over real gRPC on 127.0.0.1: two nodes, one link, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from agents.main import AgentHandle
from agents.node import Site
from common.protos import control_pb2 as ctl
from common.protos import control_pb2_grpc as ctl_grpc
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from lab.plan import LabPlan
from tests.harness.agents import (
    LinkSpec,
    agent_channel,
    km_tls,
    make_test_plan,
    operator_tls,
    running_agents,
)

RATE_BPS = 256_000.0  # 1000 chunks of 256 bits per second


def plan_for(tmp_path: Path, rate: float = RATE_BPS) -> LabPlan:
    return make_test_plan(tmp_path, ["a", "b"], [LinkSpec("a", "b", skr_bps=rate, qber=0.02)])


class Client:
    """The key manager's view of one agent: KeyDelivery and AgentControl stubs."""

    def __init__(self, plan: LabPlan, name: str, handle: AgentHandle) -> None:
        # As in a twin: the node's KM draws keys, the lab's operator injects faults.
        self.address = handle.grpc_address
        self.channel = agent_channel(handle.grpc_address, km_tls(plan, name))
        self.operator = agent_channel(handle.grpc_address, operator_tls(plan))
        self.keys: Any = pb_grpc.KeyDeliveryStub(self.channel)
        self.control: Any = ctl_grpc.AgentControlStub(self.operator)
        self.link = plan.links[0].qkdl_id
        self.source = f"qkdn:{plan.node(name).qkdn_id}"
        self.destination = f"qkdn:{plan.node(plan.links[0].other_end(name)).qkdn_id}"

    async def open(self, timeout_ms: int = 0) -> Any:
        return await self.keys.OpenConnect(
            pb.OpenConnectRequest(
                source=self.source,
                destination=self.destination,
                key_stream_id=self.link,
                qos=pb.QoS(timeout=timeout_ms),
            )
        )

    async def get(self, index: int | None = None) -> tuple[Any, str]:
        request = pb.GetKeyRequest(key_stream_id=self.link)
        if index is not None:
            request.index = index
        call = self.keys.GetKey(request)
        reply = await call
        trailer = dict(await call.trailing_metadata() or ())
        return reply, str(trailer.get("qkdsdn-message", ""))

    async def get_ready(self, index: int | None = None, deadline_s: float = 10.0) -> Any:
        """GetKey until the key has been generated (status 2 'not yet generated')."""
        deadline = time.monotonic() + deadline_s
        while True:
            reply, message = await self.get(index)
            if reply.status != 2 or message != "not yet generated":
                return reply
            assert time.monotonic() < deadline, "key never generated"
            await asyncio.sleep(0.005)


def run(
    tmp_path: Path,
    body: Callable[[LabPlan, Client, Client], Awaitable[None]],
    rate: float = RATE_BPS,
) -> None:
    plan = plan_for(tmp_path, rate)

    async def scenario() -> None:
        async with running_agents(plan, plan_ports=False, persist=False) as agents:
            a, b = Client(plan, "a", agents["a"]), Client(plan, "b", agents["b"])
            try:
                await body(plan, a, b)
            finally:
                for client in (a, b):
                    await client.channel.close(None)
                    await client.operator.close(None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_same_index_same_key_consumed_once(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        assert (await a.open()).status == 1  # peer module not connected yet
        opened = await b.open()
        assert opened.status == 0 and opened.qos.key_chunk_size == 32
        first = await a.get_ready()
        assert first.status == 0 and len(first.key_buffer) == 32
        same = await b.get_ready(first.index)
        assert same.status == 0 and same.key_buffer == first.key_buffer
        again, message = await a.get(first.index)
        assert again.status == 2 and message == "consumed" and again.key_buffer == b""
        nxt = await a.get_ready()
        assert nxt.index == first.index + 1 and nxt.key_buffer != first.key_buffer
        assert (await b.get_ready(nxt.index)).key_buffer == nxt.key_buffer
        status = await a.control.Status(ctl.StatusRequest())
        assert status.links[0].consumed_keys == 2 and status.links[0].status == "ACTIVE"

    run(tmp_path, body)


def test_cut_link_and_eavesdropper_give_status_4(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        await a.open(), await b.open()
        assert (await a.get_ready()).status == 0
        cut = await a.control.SetLink(ctl.SetLinkRequest(qkdl_id=a.link, up=False))
        assert cut.link.status == "OFF" and not cut.link.fibre_up
        reply, message = await b.get()  # the peer end in this process saw the cut too
        assert reply.status == 4 and "fibre cut" in message
        assert (await a.open()).status == 4
        await b.control.SetLink(ctl.SetLinkRequest(qkdl_id=a.link, up=True))
        assert (await a.get_ready()).status == 0
        eve = await a.control.SetEavesdropper(
            ctl.SetEavesdropperRequest(qkdl_id=a.link, fraction=0.1)
        )
        assert eve.link.status == "ACTIVE" and eve.link.qber > 0.04
        eve = await a.control.SetEavesdropper(
            ctl.SetEavesdropperRequest(qkdl_id=a.link, fraction=0.6)
        )
        assert eve.link.aborted and eve.link.skr_bps == 0
        reply, message = await b.get()
        assert reply.status == 4 and "aborted" in message
        await a.control.SetEavesdropper(ctl.SetEavesdropperRequest(qkdl_id=a.link, fraction=0))
        assert (await b.get_ready()).status == 0

    run(tmp_path, body)


def test_bad_control_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        for call, request, code in (
            (a.control.SetLink, ctl.SetLinkRequest(qkdl_id="nope", up=False), "NOT_FOUND"),
            (
                a.control.SetEavesdropper,
                ctl.SetEavesdropperRequest(qkdl_id=a.link, fraction=1.5),
                "INVALID_ARGUMENT",
            ),
        ):
            try:
                await call(request)
            except grpc.aio.AioRpcError as error:
                assert error.code().name == code
            else:
                raise AssertionError("the bad request was accepted")
        status = await a.control.Status(ctl.StatusRequest())
        assert status.links[0].status == "ACTIVE" and status.links[0].eve_fraction == 0

    run(tmp_path, body)


def test_get_key_waits_for_generation_within_the_qos_timeout(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        assert (await a.open(timeout_ms=3000)).status == 1
        await asyncio.sleep(0)
        first = await a.get()  # 256 bit/s: one chunk per second, the call waits for it
        assert first[0].status == 0
        second, _ = await a.get()
        assert second.status == 0 and second.index == first[0].index + 1
        assert (await b.open()).status == 0
        early, message = await b.get(second.index + 50)  # no timeout at b: at once
        assert early.status == 2 and message == "not yet generated"

    run(tmp_path, body, rate=256.0)


def test_stream_is_identical_when_the_ends_live_in_separate_processes(tmp_path: Path) -> None:
    """Each node in its own Site (as in two agent processes): the same index, the same key."""
    plan = plan_for(tmp_path)

    async def scenario() -> None:
        async with (
            running_agents(plan, ["a"], plan_ports=False, persist=False, site=Site()) as one,
            running_agents(plan, ["b"], plan_ports=False, persist=False, site=Site()) as two,
        ):
            a, b = Client(plan, "a", one["a"]), Client(plan, "b", two["b"])
            assert (await a.open()).status == 0  # the peer cannot be observed: assumed there
            assert (await b.open()).status == 0
            keys = [await a.get_ready() for _ in range(5)]
            for key in keys:
                assert (await b.get_ready(key.index)).key_buffer == key.key_buffer
            for client in (a, b):
                await client.channel.close(None)
                await client.operator.close(None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_stop_node_answers_then_its_servers_go_and_the_peer_sees_the_link_down(
    tmp_path: Path,
) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        await a.open(), await b.open()
        reply = await b.control.StopNode(ctl.StopNodeRequest())
        assert reply.message == "b stopped"
        status = await a.control.Status(ctl.StatusRequest())
        assert status.links[0].status == "PENDING"
        reply_a, message = await a.get()
        assert reply_a.status == 4 and "other end" in message
        deadline = time.monotonic() + 10
        while True:  # b's gRPC server closes right after its reply
            try:
                await b.control.Status(ctl.StatusRequest(), timeout=1)
            except grpc.aio.AioRpcError as error:
                assert error.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                break
            assert time.monotonic() < deadline, "b still answers after StopNode"
            await asyncio.sleep(0.05)

    run(tmp_path, body)


def test_a_restarted_key_manager_reopens_its_stream_at_once(tmp_path: Path) -> None:
    """The stream's owner is the caller's certificate identity, not its address: the same
    KM on a new connection (a restarted process) opens again without the idle wait."""

    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        await b.open()
        assert (await a.open()).status == 0
        assert (await a.get_ready()).status == 0  # in use: the stream is not idle
        again = agent_channel(a.address, km_tls(plan, "a"))  # the same KM, a new connection
        try:
            stub: Any = pb_grpc.KeyDeliveryStub(again)
            reopened = await stub.OpenConnect(
                pb.OpenConnectRequest(
                    source=a.source, destination=a.destination, key_stream_id=a.link
                )
            )
            assert reopened.status == 0  # not 5 (KEY_STREAM_IN_USE) for idle_release_s
        finally:
            await again.close(None)

    run(tmp_path, body)


def test_a_batch_of_keys_matches_the_peer_and_stops_where_generation_stands(
    tmp_path: Path,
) -> None:
    async def body(plan: LabPlan, a: Client, b: Client) -> None:
        await a.open(), await b.open()
        first = await a.get_ready()
        start = first.index + 1
        reply = await a.keys.GetKeyBatch(
            pb.GetKeyBatchRequest(key_stream_id=a.link, indices=[start, start + 1, 10**9])
        )
        assert reply.status == 0
        assert [k.index for k in reply.keys] == [start, start + 1]  # 10**9: not generated
        assert all(k.status == 0 and len(k.key_buffer) == 32 for k in reply.keys)
        for key in reply.keys:
            assert (await b.get_ready(key.index)).key_buffer == key.key_buffer
        again = await a.keys.GetKeyBatch(
            pb.GetKeyBatchRequest(key_stream_id=a.link, indices=[start])
        )
        assert [(k.index, k.status, k.message) for k in again.keys] == [(start, 2, "consumed")]
        try:
            await a.keys.GetKeyBatch(pb.GetKeyBatchRequest(key_stream_id=a.link))
            raise AssertionError("an empty batch was accepted")
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "1 to 1024 indices" in str(error.details())

    run(tmp_path, body)
