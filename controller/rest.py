"""A small HTTP JSON API over the controller (used by `qkdsdn controller ...`) on `listen.api`.

GET /status, /topology, /paths?a=&b=&k=&policy=, /intents, /intents/{id}, /whoami, and the
live view /live, /live/state, /live/events (controller/web/); with a `domain` section, the
controller-to-controller routes /interdomain/* (controller/interdomain/routes.py);
POST /admit, /intents (a key request; optional `key_mode`, default qkd-preferred);
DELETE /intents/{id}; PUT /policy {"policy": NAME}.
Every call needs `Authorization: Bearer <token>` of a role allowed to make it
(controller/api_token.py: viewer reads, operator installs and withdraws, admin sets the
policy): 401 without a known token, 403 with a role too low. The live view's pages may carry
the viewer's token as `?token=` instead (a browser's EventSource cannot send headers).
Intent installs and withdrawals, policy changes and every refused change are recorded in the
audit log (common/audit.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from common.audit import AuditLog
from common.config import Address
from controller.api import Controller
from controller.api_token import (
    READ_METHODS,
    ApiToken,
    ApiTokens,
    Caller,
    Refusal,
    check_request,
)
from controller.buffer_service import BufferService
from controller.errors import ControllerError, UnknownIntent
from controller.interdomain.routes import interdomain_router
from controller.interdomain.service import DomainService
from controller.model import Decision, Intent, KeyRequest, Path, QoS, TopologySnapshot
from controller.paths import POLICIES, policy_named
from controller.steering_service import SteeringService
from controller.web.feed import LiveFeed
from controller.web.routes import live_router
from yang.model import KeyMode

UINT32 = 0xFFFFFFFF
KEY_MODE_NAMES = tuple(mode.value for mode in KeyMode)


class KeyRequestBody(BaseModel):
    src: str = Field(description="source node: name or qkdn_id")
    dst: str = Field(description="destination node: name or qkdn_id")
    server_app_id: str = ""
    client_app_ids: list[str] = []
    min_bandwidth: int = Field(0, ge=0, le=UINT32)
    max_bandwidth: int = Field(0, ge=0, le=UINT32)
    priority: int = Field(0, ge=0, le=UINT32)
    ttl: int = Field(0, ge=0, le=UINT32)
    jitter: int = Field(0, ge=0, le=UINT32)
    forced_path: list[str] | None = None
    key_mode: str = Field(
        KeyMode.QKD_PREFERRED.value,
        description=f"qkdsdn-node key_mode of the association: {', '.join(KEY_MODE_NAMES)}",
    )

    def to_request(self, snapshot: TopologySnapshot) -> KeyRequest:
        mode = _key_mode(self.key_mode)
        forced = tuple(snapshot.resolve(n) for n in self.forced_path) if self.forced_path else None
        return KeyRequest(
            snapshot.resolve(self.src),
            snapshot.resolve(self.dst),
            self.server_app_id,
            tuple(self.client_app_ids),
            QoS(self.min_bandwidth, self.max_bandwidth, self.priority, self.ttl, self.jitter),
            forced,
            key_mode=mode,
        )


def _key_mode(text: str) -> KeyMode:
    """The key mode named `text`; ValueError naming the field and the known modes."""
    for mode in KeyMode:
        if mode.value == text:
            return mode
    raise ValueError(f"key_mode {text[:40]!r} is not one of {', '.join(KEY_MODE_NAMES)}")


def path_json(path: Path | None, snapshot: TopologySnapshot) -> dict[str, Any] | None:
    if path is None:
        return None
    return {
        "nodes": [snapshot.name_of(n) for n in path.nodes],
        "node_ids": list(path.nodes),
        "links": list(path.links),
        "hops": path.hops,
    }


def intent_json(intent: Intent, snapshot: TopologySnapshot) -> dict[str, Any]:
    request = intent.request
    return {
        "intent_id": intent.intent_id,
        "state": intent.state.value,
        "src": snapshot.name_of(request.src),
        "dst": snapshot.name_of(request.dst),
        "server_app_id": request.server_app_id,
        "client_app_ids": list(request.client_app_ids),
        "qos": {
            "min_bandwidth": request.qos.min_bandwidth,
            "max_bandwidth": request.qos.max_bandwidth,
            "priority": request.qos.priority,
            "ttl": request.qos.ttl,
            "jitter": request.qos.jitter,
        },
        "key_mode": request.key_mode.value,
        "path": path_json(intent.path, snapshot),
        "bandwidth": intent.bandwidth,
        "reason": intent.reason,
    }


def decision_json(decision: Decision, snapshot: TopologySnapshot) -> dict[str, Any]:
    return {
        "admitted": decision.admitted,
        "path": path_json(decision.path, snapshot),
        "bandwidth": decision.bandwidth,
        "preempted": list(decision.preempted),
        "reason": decision.reason,
    }


class PolicyBody(BaseModel):
    policy: str = Field(description=f"path policy: {', '.join(POLICIES)}")


def _action(method: str, path: str) -> str:
    """The audit action of a state-changing call."""
    if path == "/intents" and method == "POST":
        return "intent.install"
    if path.startswith("/intents/") and method == "DELETE":
        return "intent.withdraw"
    if path == "/policy":
        return "policy.set"
    return f"{method.lower()} {path}"


def _credential(request: Request) -> str | None:
    """The Authorization header, or for the live view's pages a `?token=` query parameter."""
    header = request.headers.get("authorization")
    if header or not request.url.path.startswith("/live"):
        return header
    token = request.query_params.get("token")
    return f"Bearer {token}" if token else None


def build_app(
    controller: Controller,
    tokens: ApiTokens | ApiToken,
    audit: AuditLog | None = None,
    steering: SteeringService | None = None,
    stopping: Callable[[], bool] = lambda: False,
    buffers: BufferService | None = None,
    interdomain: DomainService | None = None,
) -> FastAPI:
    """The API app. A single ApiToken (the former one-token setup) is accepted as admin;
    `interdomain` (a controller of several domains) adds the `/interdomain/*` routes."""
    if isinstance(tokens, ApiToken):
        tokens = ApiTokens.single(tokens)
    log = audit or AuditLog("controller", None)
    app = FastAPI(title="qkd-sdn controller", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def require_role(request: Request, call_next: Any) -> Response:
        method, path = request.method, request.url.path
        checked = check_request(method, path, _credential(request), tokens)
        if isinstance(checked, Refusal):
            if method.upper() not in READ_METHODS and path != "/admit":
                who = checked.caller.name if checked.caller else "anonymous"
                role = checked.caller.role.label if checked.caller else "-"
                log.record(who, role, _action(method, path), path, "refused", checked.detail)
            headers = {"WWW-Authenticate": "Bearer"} if checked.status == 401 else None
            return JSONResponse({"detail": checked.detail}, checked.status, headers=headers)
        request.state.caller = checked
        response: Response = await call_next(request)
        return response

    def caller_of(request: Request) -> Caller:
        caller: Caller = request.state.caller
        return caller

    def record(request: Request, action: str, target: str, outcome: str, detail: str) -> None:
        caller = caller_of(request)
        log.record(caller.name, caller.role.label, action, target, outcome, detail)

    def bad(error: Exception) -> HTTPException:
        return HTTPException(status_code=400, detail=str(error).strip("'\""))

    @app.get("/status")
    def status() -> dict[str, Any]:
        intents = controller.intents()
        counts: dict[str, int] = {}
        for intent in intents:
            counts[intent.state.value] = counts.get(intent.state.value, 0) + 1
        return {
            "policy": controller.intent_service.policy.name,
            "devices": [
                {"name": name, "qkdn_id": device_id, "connected": connected}
                for name, device_id, connected in controller.device_status()
            ],
            "links": len(controller.topology().links),
            "intents": counts,
        }

    @app.get("/topology")
    def topology() -> dict[str, Any]:
        snapshot = controller.topology()
        reservations = controller.intent_service.reservations()
        return {
            "devices": [
                {"name": d.name, "qkdn_id": d.device_id, "available": d.available}
                for d in snapshot.devices.values()
            ],
            "links": [
                {
                    "qkdl_id": link.qkdl_id,
                    "a": snapshot.name_of(link.a),
                    "b": snapshot.name_of(link.b),
                    "status": link.status.value,
                    "skr": link.skr,
                    "eskr": link.eskr,
                    "expected_consumption": link.expected_consumption,
                    "reserved": reservations.reserved_on(link.qkdl_id),
                    "qber": link.qber,
                }
                for link in snapshot.links.values()
            ],
        }

    @app.get("/paths")
    def paths(a: str, b: str, k: int = 3, policy: str | None = None) -> dict[str, Any]:
        snapshot = controller.topology()
        try:
            found = controller.paths(a, b, policy, k)
        except (KeyError, ValueError) as error:
            raise bad(error) from None
        return {"paths": [path_json(p, snapshot) for p in found]}

    @app.get("/intents")
    def intents() -> list[dict[str, Any]]:
        snapshot = controller.topology()
        return [intent_json(i, snapshot) for i in controller.intents()]

    @app.get("/intents/{intent_id}")
    def intent(intent_id: str) -> dict[str, Any]:
        try:
            return intent_json(controller.intent_service.get(intent_id), controller.topology())
        except UnknownIntent as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    @app.post("/admit")
    def admit(body: KeyRequestBody) -> dict[str, Any]:
        snapshot = controller.topology()
        try:
            request = body.to_request(snapshot)
        except (KeyError, ValueError) as error:
            raise bad(error) from None
        return decision_json(controller.admit(request), snapshot)

    @app.get("/whoami")
    def whoami(http: Request) -> dict[str, Any]:
        caller = caller_of(http)
        return {"name": caller.name, "role": caller.role.label}

    @app.post("/intents")
    async def install(body: KeyRequestBody, http: Request) -> dict[str, Any]:
        target = f"{body.server_app_id or body.src}>{','.join(body.client_app_ids) or body.dst}"
        try:
            request = body.to_request(controller.topology())
        except (KeyError, ValueError) as error:
            record(http, "intent.install", target, "refused", str(error).strip("'\""))
            raise bad(error) from None
        try:
            intent = await controller.install(request)
        except Exception as error:
            record(http, "intent.install", target, "failed", type(error).__name__)
            raise
        outcome = {"INSTALLED": "ok", "REJECTED": "refused"}.get(intent.state.value, "failed")
        record(http, "intent.install", f"{intent.intent_id} {target}", outcome, intent.reason)
        return intent_json(intent, controller.topology())

    @app.delete("/intents/{intent_id}")
    async def withdraw(intent_id: str, http: Request) -> dict[str, Any]:
        try:
            intent = await controller.withdraw(intent_id)
        except UnknownIntent as error:
            record(http, "intent.withdraw", intent_id, "refused", str(error))
            raise HTTPException(status_code=404, detail=str(error)) from None
        except ControllerError as error:
            record(http, "intent.withdraw", intent_id, "failed", str(error))
            raise HTTPException(status_code=503, detail=str(error)) from None
        record(http, "intent.withdraw", intent_id, "ok", intent.state.value)
        return intent_json(intent, controller.topology())

    @app.put("/policy")
    def set_policy(body: PolicyBody, http: Request) -> dict[str, Any]:
        try:
            policy = policy_named(body.policy)
        except ValueError as error:
            record(http, "policy.set", body.policy, "refused", str(error))
            raise bad(error) from None
        before = controller.intent_service.policy.name
        controller.intent_service.policy = policy
        record(http, "policy.set", body.policy, "ok", f"was {before}")
        return {"policy": policy.name}

    feed = LiveFeed(controller.topology)
    controller.topology_events.add(feed.on_topology)
    controller.intent_events.add(feed.on_intent)
    if steering is not None:
        steering.listeners.add(feed.on_steering)
    if buffers is not None:
        buffers.listeners.add(feed.on_buffer)
    app.state.live_feed = feed
    app.include_router(live_router(controller, feed, steering, stopping=stopping))
    if interdomain is not None:
        app.include_router(interdomain_router(interdomain))
    return app


def api_server(
    controller: Controller,
    address: Address,
    tokens: ApiTokens | ApiToken,
    audit: AuditLog | None = None,
    steering: SteeringService | None = None,
    buffers: BufferService | None = None,
    interdomain: DomainService | None = None,
) -> uvicorn.Server:
    """The HTTP server on `address`; run with `await server.serve()`. Calls need a token of
    `tokens` with a role high enough (controller/api_token.py); `steering` (data-driven
    control, if on) shows its decisions in /live."""
    servers: list[uvicorn.Server] = []  # the live view's streams end when it stops

    def stopping() -> bool:
        return bool(servers) and servers[0].should_exit

    config = uvicorn.Config(
        build_app(controller, tokens, audit, steering, stopping, buffers, interdomain),
        host=address.host,
        port=address.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,  # a stream still open then is cut
    )
    servers.append(uvicorn.Server(config))
    return servers[0]
