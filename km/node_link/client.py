"""The key manager's side of NodeLink: register applications, follow the running config.

`NodeLinkClient.run` keeps a `WatchConfig` stream open to the node's agent and hands every
pushed configuration to a callback; when the stream breaks (agent restarting, not up yet) it
reconnects with bounded exponential backoff. One task, no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import grpc

from common.protos import node_link_pb2 as pb
from common.protos import node_link_pb2_grpc as pb_grpc
from common.roles import TlsMaterial, channel_credentials
from km.associations import AppRequest, ConfigError, NodeView, parse_node_config
from km.consumption import PairUsage
from km.link_pools import FAST_RECONNECT
from km.supply import SupplyError

log = logging.getLogger(__name__)

# The generated stub is untyped; calling it through a typed alias keeps strict mypy quiet.
_NODE_LINK_STUB: Callable[[grpc.aio.Channel], Any] = pb_grpc.NodeLinkStub

RECONNECT_FIRST_S = 0.05
RECONNECT_LIMIT_S = 2.0


class NodeLinkClient:
    def __init__(
        self,
        address: str,
        km_id: str,
        on_view: Callable[[NodeView], None],
        *,
        tls: TlsMaterial,
        rpc_timeout: float = 10.0,  # a loaded agents process (50 nodes) answered after 5 s
    ) -> None:
        self.address = address
        self._credentials = channel_credentials(tls)  # the agent admits only its node's KM
        self.km_id = km_id
        self._on_view = on_view
        self._rpc_timeout = rpc_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while a WatchConfig stream is open
        self.generation = 0  # grows each time a WatchConfig stream opens (agent (re)started)

    async def start(self) -> None:
        if self._channel is not None:
            return
        self._channel = grpc.aio.secure_channel(
            self.address, self._credentials, options=FAST_RECONNECT
        )
        self._stub = _NODE_LINK_STUB(self._channel)
        self._task = asyncio.create_task(self._watch(), name=f"node-link {self.km_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def register(self, request: AppRequest) -> None:
        """Asks the node to raise `sdqkdn_application_new`; SupplyError(503) if it cannot."""
        if self._stub is None:
            raise SupplyError(503, "key manager is not connected to its node")
        message = pb.AppRegistration(
            server_app_id=request.master,
            client_app_id=list(request.slaves),
            remote_qkdn_id=request.remote_qkdn_id,
            app_type="CLIENT",
            min_bandwidth=request.min_bandwidth,
            ttl=request.ttl_s,
            key_mode="" if request.key_mode is None else request.key_mode.value,
        )
        try:
            reply = await self._stub.RegisterApplication(message, timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            raise SupplyError(
                503, f"node agent unreachable to register the application: {exc.code().name}"
            ) from None
        if not reply.accepted:
            raise SupplyError(503, f"node refused to register the application: {reply.message}")

    async def report_consumption(self, run: str, pairs: tuple[PairUsage, ...]) -> bool:
        """Sends the key bits delivered per (master, slave) pair (km/consumption.py) to the
        agent; True if it took them. False while not connected or when the agent refused."""
        if self._stub is None or not self.connected.is_set():
            return False
        message = pb.ConsumptionReport(
            km_id=self.km_id,
            km_run=run,
            pairs=[
                pb.PairConsumption(
                    server_app_id=p.master,
                    client_app_id=p.slave,
                    delivered_keys=p.keys,
                    delivered_bits=p.bits,
                )
                for p in pairs
            ],
        )
        try:
            reply = await self._stub.ReportConsumption(message, timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            log.debug("consumption report to %s: %s", self.address, exc.code().name)
            return False
        if not reply.accepted:
            log.warning("agent refused the consumption report: %s", reply.message)
        return bool(reply.accepted)

    async def _watch(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                stream = self._stub.WatchConfig(pb.WatchRequest(km_id=self.km_id))
                async for config in stream:
                    if not self.connected.is_set():
                        self.generation += 1
                    self.connected.set()
                    delay = RECONNECT_FIRST_S
                    self._deliver(config.qkd_node_json, config.revision)
            except grpc.aio.AioRpcError as exc:
                log.info("NodeLink to %s: %s; reconnecting", self.address, exc.code().name)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_LIMIT_S)

    def _deliver(self, text: str, revision: int) -> None:
        try:
            view = parse_node_config(text, revision)
        except ConfigError as exc:
            # Keep the last good view: a malformed push must not drop live associations.
            log.error("node configuration revision %d ignored: %s", revision, exc)
            return
        try:
            self._on_view(view)
        except ConfigError as exc:
            log.error("node configuration revision %d ignored: %s", revision, exc)
