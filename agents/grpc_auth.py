"""Who may call which method of a node agent's gRPC server, enforced by a server interceptor.

The agent's gRPC port takes mutual TLS (the client certificate is checked against the CA in
the handshake); the interceptor then reads the caller's identity (`urn:qkdsdn:ROLE:NAME`,
common/roles.py) and lets a call through only when the method's rule names it:

    qkdsdn.etsi004.KeyDelivery/*        km <this node>     (link keys: module side of ETSI 004)
    qkdsdn.node_link.NodeLink/*         km <this node>     (register applications, config)
    qkdsdn.agents.control.AgentControl/* operator (any name) (faults, stop, status)
    any other method                    nobody

A caller without an identity gets UNAUTHENTICATED, a known caller the rule does not name
PERMISSION_DENIED, each with a reason. `authorize` is the pure rule; `AgentAuthInterceptor`
applies it to every call.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from common.roles import Identity, Role, peer_identity

KEY_DELIVERY = "/qkdsdn.etsi004.KeyDelivery/"
NODE_LINK = "/qkdsdn.node_link.NodeLink/"
AGENT_CONTROL = "/qkdsdn.agents.control.AgentControl/"


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str


def authorize(method: str, caller: Identity | None, node: str) -> Refusal | None:
    """None when `caller` may call `method` on the agent of `node`; otherwise why not. Pure."""
    if caller is None:
        return Refusal(
            grpc.StatusCode.UNAUTHENTICATED,
            "the client certificate names no role (a URI SAN urn:qkdsdn:ROLE:NAME is required)",
        )
    if method.startswith((KEY_DELIVERY, NODE_LINK)):
        if caller == Identity(Role.KM, node):
            return None
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method}: only the key manager of node {node!r} may call it, not {caller}",
        )
    if method.startswith(AGENT_CONTROL):
        if caller.role is Role.OPERATOR:
            return None
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method}: only an operator may control the node, not {caller}",
        )
    return Refusal(grpc.StatusCode.PERMISSION_DENIED, f"{method}: not served to anyone")


Behaviour = Callable[..., Any]
if TYPE_CHECKING:  # generic in the type stubs only
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


class AgentAuthInterceptor(_Interceptor):
    """Wraps every method handler of the agent of `node` with `authorize`.

    grpc.aio hands an interceptor the method name but not the peer; the check therefore runs
    inside the wrapped handler, where the call's context (and its TLS peer) is known."""

    def __init__(self, node: str) -> None:
        self.node = node

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return _refusing_handler(method, self.node)
        return _guarded(handler, method, self.node)


async def _check(method: str, node: str, context: Any) -> None:
    refusal = authorize(method, peer_identity(context), node)
    if refusal is not None:
        await context.abort(refusal.code, refusal.reason)


def _guard_unary(behaviour: Behaviour, method: str, node: str) -> Behaviour:
    async def guarded(request: Any, context: Any) -> Any:
        await _check(method, node, context)
        return await behaviour(request, context)

    return guarded


def _guard_stream(behaviour: Behaviour, method: str, node: str) -> Behaviour:
    if inspect.isasyncgenfunction(behaviour):

        async def guarded_gen(request: Any, context: Any) -> AsyncIterator[Any]:
            await _check(method, node, context)
            async for item in behaviour(request, context):
                yield item

        return guarded_gen

    async def guarded(request: Any, context: Any) -> Any:  # writes with context.write
        await _check(method, node, context)
        return await behaviour(request, context)

    return guarded


def _guarded(handler: Handler, method: str, node: str) -> Handler:
    de, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary(handler.unary_unary, method, node), de, ser
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _guard_stream(handler.unary_stream, method, node), de, ser
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _guard_unary(handler.stream_unary, method, node), de, ser
        )
    stream_stream = handler.stream_stream  # the one kind left
    assert stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _guard_stream(stream_stream, method, node), de, ser
    )


def _refusing_handler(method: str, node: str) -> Handler:
    """An unknown method: refused like any other (not UNIMPLEMENTED to an unknown caller)."""

    async def refuse(request: Any, context: Any) -> Any:
        await _check(method, node, context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method}: no such method")

    return grpc.unary_unary_rpc_method_handler(refuse)


def agent_grpc_server(node: str) -> grpc.aio.Server:
    """A grpc.aio server for the agent of `node` with the authorisation interceptor; the caller
    adds the services and a secure port (`common.roles.server_credentials`)."""
    # No SO_REUSEPORT: a port taken by another process must fail loudly, not share traffic.
    server: grpc.aio.Server = grpc.aio.server(
        interceptors=[AgentAuthInterceptor(node)], options=[("grpc.so_reuseport", 0)]
    )
    return server
