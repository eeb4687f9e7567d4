"""The `/interdomain/*` routes of the controller API (a peer domain's controller calls them
with its `peer` token; viewers may read the view and the reservations).

GET /interdomain/view; POST /interdomain/view (a peer pushes its own view when it changed);
GET /interdomain/reservations (a peer sees only its own);
GET /interdomain/peers (this controller's peers and their status: not for peers);
POST /interdomain/reservations → 201 reserved | 400 field | 403 policy | 409 capacity;
POST /interdomain/reservations/{id}/commit → 200 committed | 404 | 409 | 502;
DELETE /interdomain/reservations/{id} → 200 released | 404.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from controller.api_token import ApiRole, Caller
from controller.interdomain.reservations import Refusal, ReservationRequest
from controller.interdomain.service import DomainService, answer
from controller.interdomain.view import DomainView


def peer_domain(caller: Caller) -> str | None:
    """The domain a `peer` caller stands for (`peer:B` -> B); None for the other roles."""
    if caller.role is not ApiRole.PEER:
        return None
    return caller.name.removeprefix("peer:")


def interdomain_router(service: DomainService) -> APIRouter:
    router = APIRouter(prefix="/interdomain")

    def caller_domain(request: Request) -> str:
        caller: Caller = request.state.caller
        domain = peer_domain(caller)
        assert domain is not None  # the API's role check lets only peers change state here
        return domain

    def respond(status: int, body: Any) -> JSONResponse:
        return JSONResponse(body, status)

    @router.get("/view")
    def view() -> dict[str, Any]:
        return service.view().to_json()

    @router.post("/view")
    async def pushed(request: Request) -> JSONResponse:
        domain = caller_domain(request)
        try:
            view = DomainView.from_json(json.loads(await request.body()))
        except ValueError as error:
            detail = str(error) if not isinstance(error, json.JSONDecodeError) else "not JSON"
            return respond(400, {"detail": detail})
        result = service.accept_view(domain, view)
        if isinstance(result, Refusal):
            return respond(result.status, {"detail": result.reason})
        return respond(200, {"domain": result.domain, "accepted": True})

    @router.get("/peers")
    def peers(request: Request) -> JSONResponse:
        caller: Caller = request.state.caller
        if peer_domain(caller) is not None:  # who else we peer with is not a peer's business
            return respond(403, {"detail": "a peer domain may not list this domain's peers"})
        return respond(200, service.peers_status())

    @router.get("/reservations")
    def reservations(request: Request) -> list[dict[str, Any]]:
        caller: Caller = request.state.caller
        return [h.to_json() for h in service.holds_of(peer_domain(caller))]

    @router.post("/reservations")
    async def reserve(request: Request) -> JSONResponse:
        domain = caller_domain(request)
        try:
            body = json.loads(await request.body())
            asked = ReservationRequest.from_json(body)
        except ValueError as error:  # JSONDecodeError is one
            detail = str(error) if not isinstance(error, json.JSONDecodeError) else "not JSON"
            service.record_malformed(domain, detail)
            return respond(400, {"detail": detail})
        result = service.reserve(domain, asked)
        status, data = answer(result)
        return respond(201 if not isinstance(result, Refusal) else status, data)

    @router.post("/reservations/{ident}/commit")
    async def commit(ident: str, request: Request) -> JSONResponse:
        return respond(*answer(await service.commit(caller_domain(request), ident)))

    @router.delete("/reservations/{ident}")
    async def release(ident: str, request: Request) -> JSONResponse:
        return respond(*answer(await service.release(caller_domain(request), ident)))

    return router
