"""`NodeLink`, served by the agent to its key manager (km/node_link/node_link.proto).

RegisterApplication raises `sdqkdn_application_new` through the node; WatchConfig streams
the running configuration (RFC 7951 JSON) at once and after every change, until the node
stops or the key manager goes away; ReportConsumption takes the key manager's delivered bits
per SAE pair (the 015 app_statistics).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc

from agents.node import QkdNode
from agents.node.consumption import PairReport
from agents.notifications import AppRequest
from common.protos import node_link_pb2 as pb
from common.protos import node_link_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class NodeLinkService:
    def __init__(self, node: QkdNode) -> None:
        self.node = node

    async def RegisterApplication(
        self, request: pb.AppRegistration, context: Context
    ) -> pb.AppRegistrationReply:
        accepted, message = self.node.register_application(
            AppRequest(
                server_app_id=request.server_app_id,
                client_app_ids=tuple(request.client_app_id),
                local_qkdn_id=self.node.qkdn_id,
                remote_qkdn_id=request.remote_qkdn_id,
                app_type=request.app_type or "CLIENT",
                app_priority=request.app_priority,
                min_bandwidth=request.min_bandwidth,
                max_bandwidth=request.max_bandwidth,
                jitter=request.jitter,
                ttl=request.ttl,
                key_mode=request.key_mode,
            )
        )
        return pb.AppRegistrationReply(accepted=accepted, message=message)

    async def ReportConsumption(
        self, request: pb.ConsumptionReport, context: Context
    ) -> pb.ConsumptionReply:
        problem = self.node.report_consumption(
            request.km_run,
            [
                PairReport(p.server_app_id, p.client_app_id, p.delivered_keys, p.delivered_bits)
                for p in request.pairs
            ],
        )
        return pb.ConsumptionReply(accepted=not problem, message=problem or "taken")

    async def WatchConfig(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.NodeConfig]:
        async for revision, text in self.node.feed.watch():
            yield pb.NodeConfig(revision=revision, qkd_node_json=text)


def add_to_server(service: NodeLinkService, server: grpc.aio.Server) -> None:
    add = cast(
        Callable[[NodeLinkService, grpc.aio.Server], None], pb_grpc.add_NodeLinkServicer_to_server
    )
    add(service, server)
