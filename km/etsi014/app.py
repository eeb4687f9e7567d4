"""The ETSI GS QKD 014 HTTP front end (FastAPI): maps requests to `Etsi014Service` calls.

The caller's SAE_ID is the name in its TLS client certificate's role SAN
`urn:qkdsdn:sae:<id>` (common/roles.py): a certificate of another role (a KM, the controller)
identifies no SAE. uvicorn does not put the certificate into the ASGI scope, so
`km/etsi014/server.py` does: it adds the ASGI TLS extension
(`scope["extensions"]["tls"]["client_cert_chain"]`, PEM), read here.
Every error is an ETSI `Error` body with 400, 401 or 503 (FastAPI's 422 is replaced by 400).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from common.openapi import openapi_without_422
from common.roles import Role, identity_of_pem
from km.etsi014.schemas import Error, KeyContainer, KeyIds, KeyRequest, Status
from km.etsi014.service import Etsi014Error, Etsi014Service, key_container_json
from km.key_store import StoredKey

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/keys"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request format"},
    401: {"model": Error, "description": "Unauthorized"},
    503: {"model": Error, "description": "Error on the server side (e.g. no key available)"},
}


_SAE_MEMO = "qkdsdn.client_sae_id"


def sae_id_from_scope(scope: Any) -> str | None:
    """The SAE_ID of the client certificate (role sae), from the ASGI TLS extension; None
    without a certificate or with one of another role.

    The server hands every request of a connection the same extension dict, so the parsed
    identity is memoised in it: parsing took more time than storing the key."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls:
        return None
    if _SAE_MEMO in tls:
        memo: str | None = tls[_SAE_MEMO]
        return memo
    chain = tls.get("client_cert_chain") or []
    caller = identity_of_pem(str(chain[0]).encode("ascii")) if chain else None
    sae = caller.name if caller is not None and caller.role is Role.SAE else None
    tls[_SAE_MEMO] = sae
    return sae


def caller_sae(request: Request) -> str:
    # Called in each handler, not as a FastAPI dependency: dependency solving cost more
    # than the key store per request (bench/etsi014.py).
    return _caller_of(request.scope)


def _caller_of(scope: Any) -> str:
    sae = sae_id_from_scope(scope)
    if sae is None:
        raise Etsi014Error(
            401, "the client certificate is not an application's (urn:qkdsdn:sae:SAE_ID)"
        )
    return sae


def create_app(service: Etsi014Service) -> FastAPI:
    app = FastAPI(
        title="qkd-sdn key manager — ETSI GS QKD 014",
        version="1.1.1",
        description="Key delivery to SAEs over HTTPS with mutual TLS; the caller's SAE_ID "
        "is the name in its client certificate's URI SAN urn:qkdsdn:sae:SAE_ID.",
        docs_url=None,
        redoc_url=None,
    )

    @app.get(
        API_PREFIX + "/{slave_SAE_ID}/status",
        response_model=Status,
        responses=_ERRORS,
        response_model_exclude_none=True,
        summary="Get status",
    )
    async def get_status(slave_SAE_ID: str, http: Request) -> Status:
        return service.status(caller_sae(http), slave_SAE_ID)

    @app.post(
        API_PREFIX + "/{slave_SAE_ID}/enc_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        response_model_exclude_none=True,
        summary="Get key (Key request in the body)",
    )
    async def post_enc_keys(
        slave_SAE_ID: str, http: Request, request: Annotated[KeyRequest | None, Body()] = None
    ) -> Response:
        keys = await service.enc_keys(caller_sae(http), slave_SAE_ID, request or KeyRequest())
        return _keys(keys, service.key_extensions(keys, slave_SAE_ID))

    @app.get(
        API_PREFIX + "/{slave_SAE_ID}/enc_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        response_model_exclude_none=True,
        summary="Get key (simple form)",
    )
    async def get_enc_keys(
        slave_SAE_ID: str,
        http: Request,
        number: Annotated[int, Query()] = 1,
        size: Annotated[int | None, Query()] = None,
    ) -> Response:
        keys = await service.enc_keys(
            caller_sae(http), slave_SAE_ID, KeyRequest(number=number, size=size)
        )
        return _keys(keys, service.key_extensions(keys, slave_SAE_ID))

    @app.post(
        API_PREFIX + "/{master_SAE_ID}/dec_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        response_model_exclude_none=True,
        summary="Get key with key IDs (Key IDs in the body)",
    )
    async def post_dec_keys(
        master_SAE_ID: str, http: Request, key_ids: Annotated[KeyIds, Body()]
    ) -> Response:
        keys = service.dec_keys(
            caller_sae(http), master_SAE_ID, [entry.key_ID for entry in key_ids.key_IDs]
        )
        return _keys(keys, service.key_extensions(keys, master_SAE_ID))

    @app.get(
        API_PREFIX + "/{master_SAE_ID}/dec_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        response_model_exclude_none=True,
        summary="Get key with key IDs (simple form)",
    )
    async def get_dec_keys(
        master_SAE_ID: str, http: Request, key_ID: Annotated[UUID, Query()]
    ) -> Response:
        keys = service.dec_keys(caller_sae(http), master_SAE_ID, [key_ID])
        return _keys(keys, service.key_extensions(keys, master_SAE_ID))

    _install_error_handlers(app)
    app.add_middleware(SimpleEncKeys, service=service)
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    return app


# `number=N`, `size=N` or both, once each, plain digits: what the fast path accepts.
_SIMPLE_QUERY = re.compile(
    rb"(?:(number|size)=([0-9]{1,9}))(?:&(?!\1=)(number|size)=([0-9]{1,9}))?"
)
_ENC_KEYS_SUFFIX = "/enc_keys"


class SimpleEncKeys:
    """Answers the simple form `GET .../{slave_SAE_ID}/enc_keys[?number=&size=]` without
    FastAPI's request parsing (measured: it cost twice the key request itself, see
    bench/etsi014.py); every other request, and any query it does not read exactly as
    FastAPI would (other parameters, repeats, signs, %-escapes), goes to the FastAPI app,
    which also documents this route. Same service call, same answers, same errors."""

    def __init__(self, app: ASGIApp, service: Etsi014Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = parse_simple_enc_keys(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        slave, key_request = request
        try:
            keys = await self.service.enc_keys(_caller_of(scope), slave, key_request)
            response: Response = _keys(keys, self.service.key_extensions(keys, slave))
        except Etsi014Error as exc:
            response = _etsi_error_response(exc)
        await response(scope, receive, send)


def parse_simple_enc_keys(scope: Scope) -> tuple[str, KeyRequest] | None:
    """(slave_SAE_ID, request) of a simple-form enc_keys the fast path answers, else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(API_PREFIX + "/") or not path.endswith(_ENC_KEYS_SUFFIX):
        return None
    slave = path[len(API_PREFIX) + 1 : -len(_ENC_KEYS_SUFFIX)]
    if not slave or "/" in slave:
        return None
    query: bytes = scope["query_string"]
    values: dict[bytes, int] = {}
    if query:
        match = _SIMPLE_QUERY.fullmatch(query)
        if match is None:
            return None
        name, value, name2, value2 = match.groups()
        values[name] = int(value)
        if name2 is not None:
            values[name2] = int(value2)
    return slave, KeyRequest(number=values.get(b"number", 1), size=values.get(b"size"))


def _keys(
    keys: Sequence[StoredKey], extensions: Mapping[str, Mapping[str, str]] | None = None
) -> Response:
    # response_model=KeyContainer documents the answer; a Response is passed through as is.
    return Response(key_container_json(keys, extensions), media_type="application/json")


def _error(
    status_code: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return JSONResponse(status_code=status_code, content=body, headers=headers)


def _etsi_error_response(exc: Etsi014Error) -> JSONResponse:
    headers = None
    if exc.retry_after_s is not None and exc.retry_after_s != float("inf"):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s + 0.5)))}
    return _error(exc.status_code, exc.message, exc.details, headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_etsi_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Etsi014Error)
        return _etsi_error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Only where and why: never echo the input back.
        details = [
            {"loc": ".".join(str(part) for part in err.get("loc", ())), "msg": err.get("msg", "")}
            for err in exc.errors()
        ]
        return _error(400, "malformed request", details)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route of the path; RFC 9110 15.5.6 wants every
            # method the resource supports (GET and POST for enc_keys and dec_keys).
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return _error(exc.status_code, str(exc.detail), headers=headers)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in an ETSI 014 request: %s", type(exc).__name__)
        return _error(503, "internal error of the key manager")

    app.add_exception_handler(Etsi014Error, on_etsi_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of `app` serves at `path`, in a fixed order."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))
