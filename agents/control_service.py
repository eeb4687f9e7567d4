"""`AgentControl` (agents/control.proto): lab faults and status of one emulated node.

Used by `qkdsdn lab fault` and scenarios. Unknown links are NOT_FOUND, bad values
INVALID_ARGUMENT, and a refused request changes nothing. StopNode answers first, then the
node's servers go away (`on_stop`), as a crashed node would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc

from agents.node import LinkReport, NodeStatus, QkdNode
from common.protos import control_pb2 as pb
from common.protos import control_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def link_state(report: LinkReport) -> pb.LinkState:
    # The message mirrors LinkReport field for field; only the status enum becomes its name.
    fields = dataclasses.asdict(report)
    fields["status"] = report.status.value
    return pb.LinkState(**fields)


class AgentControlService:
    def __init__(self, node: QkdNode, on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        self.node = node
        self._on_stop = on_stop
        self._tasks: set[asyncio.Task[None]] = set()

    async def SetLink(self, request: pb.SetLinkRequest, context: Context) -> pb.LinkReply:
        await self._check_link(request.qkdl_id, context)
        report = self.node.set_link(request.qkdl_id, request.up)
        action = "restored" if request.up else "cut"
        return pb.LinkReply(link=link_state(report), message=f"link {action} at {self.node.name}")

    async def SetEavesdropper(
        self, request: pb.SetEavesdropperRequest, context: Context
    ) -> pb.LinkReply:
        await self._check_link(request.qkdl_id, context)
        fraction = request.fraction
        if not 0.0 <= fraction <= 1.0:  # also false for NaN
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"fraction must be within 0..1, got {fraction}"
            )
        report = self.node.set_eavesdropper(request.qkdl_id, fraction)
        return pb.LinkReply(
            link=link_state(report), message=f"{fraction:.0%} of the signals intercepted"
        )

    async def StopNode(self, request: pb.StopNodeRequest, context: Context) -> pb.StopNodeReply:
        if self.node.status is NodeStatus.DOWN:
            return pb.StopNodeReply(message=f"{self.node.name} is already stopped")
        self.node.stop()
        if self._on_stop is not None:
            task = asyncio.get_running_loop().create_task(self._stop_later(self._on_stop))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return pb.StopNodeReply(message=f"{self.node.name} stopped")

    @staticmethod
    async def _stop_later(on_stop: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(0.05)  # let this reply leave before the server goes
        await on_stop()

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.NodeStatus:
        return pb.NodeStatus(
            name=self.node.name,
            qkdn_id=self.node.qkdn_id,
            status=self.node.status.value,
            links=[link_state(report) for report in self.node.reports()],
        )

    async def _check_link(self, qkdl_id: str, context: Context) -> None:
        if self.node.module(qkdl_id) is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"node {self.node.name} has no PHYS link {qkdl_id!r}"
            )


def add_to_server(service: AgentControlService, server: grpc.aio.Server) -> None:
    add = cast(
        Callable[[AgentControlService, grpc.aio.Server], None],
        pb_grpc.add_AgentControlServicer_to_server,
    )
    add(service, server)
