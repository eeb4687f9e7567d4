"""Scripted agents and plans for the relay's contract tests and benchmarks (like
`tests/harness/netconf.py`): exact situations the real agents do not produce on demand.

- `make_plan`: a lab plan of N nodes on free loopback ports with the real lab PKI;
- `FakeAgent`: one node's agent side as the KM sees it, over real gRPC on 127.0.0.1:
  `KeyDelivery` (module side of ETSI 004: material from agents.emulator.keystream, consumed once per
  end, link up/down, a cap on generated indices) and `NodeLink` (RegisterApplication, the
  running config pushed on WatchConfig);
- `install_path` / `reject`: what the controller writes into the nodes' running configs.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from agents.emulator.keystream import key_material
from agents.grpc_auth import agent_grpc_server
from common.protos import etsi004_pb2 as e004
from common.protos import etsi004_pb2_grpc as e004_grpc
from common.protos import node_link_pb2 as nl
from common.protos import node_link_pb2_grpc as nl_grpc
from common.roles import TlsMaterial, server_credentials
from km.link_pools import MESSAGE_METADATA
from lab.plan import LabPlan, Settings, link_uuid, node_uuid
from tests.harness.agents import LinkSpec, make_test_plan

CHUNK_BYTES = 32


def make_plan(
    tmp: Path,
    nodes: Sequence[str],
    links: Sequence[tuple[str, str]],
    *,
    pool_max_bits: int = 256 * 64,
) -> LabPlan:
    """The plan `qkdsdn lab up` would make (links at an explicit 1 Mbit/s), with the lab PKI
    and app1 at the first node, app2 at the last."""
    plan = make_test_plan(
        tmp,
        nodes,
        [LinkSpec(a, b, 10.0, "field", 1e6, 0.01) for a, b in links],
        [("app1", nodes[0]), ("app2", nodes[-1])],
        settings=Settings(link_pool_max_bits=pool_max_bits),
    )
    return plan


class _Stream:
    """One end of a PHYS link's key stream."""

    def __init__(self, seed: bytes, qkdl_id: str) -> None:
        self.seed = seed
        self.qkdl_id = qkdl_id
        self.consumed: set[int] = set()
        self.up = True
        self.generated: int | None = None  # None: unlimited
        self.requests = 0  # indices asked for, by GetKey or within a GetKeyBatch
        self.calls = 0  # GetKey and GetKeyBatch calls

    def get(self, index: int | None) -> tuple[int, int, bytes, str]:
        """(status, index, key, message) as the real module answers GetKey."""
        self.requests += 1
        if not self.up:
            return 4, 0, b"", "link down"
        if index is None:
            index = 0
            while index in self.consumed:
                index += 1
        if index in self.consumed:
            return 2, index, b"", "consumed"
        if self.generated is not None and index >= self.generated:
            return 2, index, b"", "not yet generated"
        self.consumed.add(index)
        return 0, index, key_material(self.seed, self.qkdl_id, index, CHUNK_BYTES), ""


class FakeAgent:
    def __init__(self, plan: LabPlan, node: str) -> None:
        self.plan = plan
        self.node = node
        self.qkdn_id = plan.node(node).qkdn_id
        self.streams = {
            link.qkdl_id: _Stream(Path(link.seed_file).read_bytes(), link.qkdl_id)
            for link in plan.links_of(node)
        }
        self.config: dict[str, Any] = empty_config(self.qkdn_id)
        self.revision = 0
        self.registrations: list[nl.AppRegistration] = []
        self.on_register: Callable[[nl.AppRegistration], None] | None = None
        self._changed = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.batches = True  # False: GetKeyBatch is UNIMPLEMENTED, as in an older module

    def stream(self, peer: str) -> _Stream:
        return self.streams[link_uuid(self.node, peer)]

    def push(self, config: dict[str, Any]) -> None:
        self.config = config
        self.revision += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # As the real agent: mutual TLS, only this node's KM admitted (agents/grpc_auth.py).
        server = agent_grpc_server(self.node)
        e004_grpc.add_KeyDeliveryServicer_to_server(_KeyDelivery(self), server)
        nl_grpc.add_NodeLinkServicer_to_server(_NodeLink(self), server)
        cert, key = self.plan.agent_certs[self.node]
        tls = TlsMaterial.from_files(cert, key, self.plan.credentials.ca_cert)
        server.add_secure_port(
            self.plan.node(self.node).agent_grpc_address, server_credentials(tls)
        )
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    async def watch(self) -> AsyncIterator[nl.NodeConfig]:
        while True:
            changed = self._changed
            yield nl.NodeConfig(revision=self.revision, qkd_node_json=json.dumps(self.config))
            await changed.wait()


class _KeyDelivery(e004_grpc.KeyDeliveryServicer):  # type: ignore[misc]
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    async def OpenConnect(
        self, request: e004.OpenConnectRequest, context: object
    ) -> e004.OpenConnectResponse:
        stream = self.agent.streams.get(request.key_stream_id)
        if stream is None:
            return e004.OpenConnectResponse(status=4)
        return e004.OpenConnectResponse(status=0 if stream.up else 4, key_stream_id=stream.qkdl_id)

    async def GetKey(
        self, request: e004.GetKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> e004.GetKeyResponse:
        stream = self.agent.streams.get(request.key_stream_id)
        if stream is None:
            return e004.GetKeyResponse(status=4)
        stream.calls += 1
        status, index, material, message = stream.get(
            request.index if request.HasField("index") else None
        )
        if message:
            context.set_trailing_metadata(((MESSAGE_METADATA, message),))
        return e004.GetKeyResponse(status=status, index=index, key_buffer=material)

    async def GetKeyBatch(
        self, request: e004.GetKeyBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> e004.GetKeyBatchResponse:
        if not self.agent.batches:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no GetKeyBatch here")
        stream = self.agent.streams.get(request.key_stream_id)
        if stream is None:
            return e004.GetKeyBatchResponse(status=4)
        stream.calls += 1
        keys = []
        for wanted in request.indices:  # as the real module: stop at the first not generated
            status, index, material, message = stream.get(wanted)
            if message == "not yet generated":
                break
            if status == 4:
                return e004.GetKeyBatchResponse(status=4)
            keys.append(
                e004.BatchKey(status=status, index=index, key_buffer=material, message=message)
            )
        if not keys:
            context.set_trailing_metadata(((MESSAGE_METADATA, "not yet generated"),))
            return e004.GetKeyBatchResponse(status=2)
        return e004.GetKeyBatchResponse(status=0, keys=keys)

    async def Close(self, request: e004.CloseRequest, context: object) -> e004.CloseResponse:
        return e004.CloseResponse(status=0)


class _NodeLink(nl_grpc.NodeLinkServicer):  # type: ignore[misc]
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    async def RegisterApplication(
        self, request: nl.AppRegistration, context: object
    ) -> nl.AppRegistrationReply:
        self.agent.registrations.append(request)
        if self.agent.on_register is not None:
            self.agent.on_register(request)
        return nl.AppRegistrationReply(accepted=True)

    async def WatchConfig(
        self, request: nl.WatchRequest, context: object
    ) -> AsyncIterator[nl.NodeConfig]:
        async for config in self.agent.watch():
            yield config


# ------------------------------------------------------------------ the controller's writes


def empty_config(qkdn_id: str) -> dict[str, Any]:
    return {
        "etsi-qkd-sdn-node:qkd_node": {
            "qkdn_id": qkdn_id,
            "qkd_links": {"qkd_link": []},
            "qkd_applications": {"qkd_app": []},
        }
    }


def _with(
    config: dict[str, Any], link: dict[str, Any] | None, app: dict[str, Any]
) -> dict[str, Any]:
    doc = copy.deepcopy(config)
    node = doc["etsi-qkd-sdn-node:qkd_node"]
    if link is not None:
        node["qkd_links"]["qkd_link"] = [
            entry for entry in node["qkd_links"]["qkd_link"] if entry["qkdl_id"] != link["qkdl_id"]
        ] + [link]
    node["qkd_applications"]["qkd_app"] = [
        entry for entry in node["qkd_applications"]["qkd_app"] if entry["app_id"] != app["app_id"]
    ] + [app]
    return doc


def install_path(
    agents: dict[str, FakeAgent],
    path: Sequence[str],
    master: str = "app1",
    slaves: Sequence[str] = ("app2",),
    *,
    mode: str = "aes-gcm",
    buffer: int = 3,
    skip_nodes: Sequence[str] = (),
    intent: str | None = None,
    key_mode: str = "",
) -> str:
    """Installs an admitted association along `path` (node names); returns its id.
    `key_mode`: the qkdsdn-node:key_mode written on every node ("": none)."""
    intent = intent or str(uuid.uuid4())
    ids = [node_uuid(n) for n in path]
    for index, name in enumerate(path):
        if name in skip_nodes:
            continue
        link: dict[str, Any] = {
            "qkdl_id": intent,
            "qkdl_type": "etsi-qkd-node-types:VIRT",
            "qkdl_local": {"qkdn_id": ids[0]},
            "qkdl_remote": {"qkdn_id": ids[-1]},
            "virt_bandwidth": 256,
        }
        if index > 0:
            link["virt_prev_hop"] = ids[index - 1]
        if index < len(path) - 1:
            link["virt_next_hop"] = [ids[index + 1]]
        app = {
            "app_id": intent,
            "app_type": "etsi-qkd-node-types:"
            + ("CLIENT" if index in (0, len(path) - 1) else "INTERNAL"),
            "server_app_id": master,
            "client_app_id": list(slaves),
            "backing_qkdl_id": [intent],
            "local_qkdn_id": ids[index],
            "remote_qkdn_id": ids[0] if index == len(path) - 1 else ids[-1],
            "qkdsdn-node:admission": {"state": "admitted", "path": ids},
            "qkdsdn-node:relay": {"mode": mode, "buffer": buffer},
        }
        if key_mode:
            app["qkdsdn-node:key_mode"] = key_mode
        agents[name].push(_with(agents[name].config, link, app))
    return intent


def reject(
    agent: FakeAgent,
    destination: str,
    reason: str,
    master: str = "app1",
    slaves: Sequence[str] = ("app2",),
) -> None:
    app = {
        "app_id": str(uuid.uuid4()),
        "app_type": "etsi-qkd-node-types:CLIENT",
        "server_app_id": master,
        "client_app_id": list(slaves),
        "local_qkdn_id": agent.qkdn_id,
        "remote_qkdn_id": node_uuid(destination),
        "qkdsdn-node:admission": {"state": "rejected", "reason": reason},
    }
    agent.push(_with(agent.config, None, app))


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Polls a condition on the event loop with a deadline (no fixed sleeps in tests)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.005)
