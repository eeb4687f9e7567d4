"""The ETSI GS QKD 020 HTTP front end (FastAPI) of a border KM: ext_keys, ack, void, versions.

The caller is the key manager named in its TLS client certificate's URI SAN
(`urn:qkdsdn:km:<node>`); its chain was verified in the handshake against this KM's CA and the
peer CAs its operator allowed (`km/interdomain/tls.py`). Only the `interdomain.peers[].kme_id`
may call, each with a certificate issued by the CA of its own domain (`peers[].ca`): any other
certificate is answered 401 and reported to `on_refused` (audit, log).
Every error is an `Error` body (400 names the field; FastAPI's 422 is replaced by 400).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from cryptography import x509
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.openapi import openapi_without_422
from common.roles import Role, identity_of_pem
from km.interdomain.tls import issued_by
from km.interdomain.wire import (
    API_BASE,
    VERSION,
    Ack,
    AckResult,
    Error,
    ExtKeys,
    ExtKeysResult,
    Versions,
    VoidRequest,
)

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request format (the field is named)"},
    401: {"model": Error, "description": "Unauthorized (not a KMS this one peers with)"},
    503: {"model": Error, "description": "Error on the server side"},
}


class Etsi020Error(Exception):
    def __init__(
        self, status_code: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = details


class Etsi020Service(Protocol):
    async def ext_keys(self, body: ExtKeys, caller: str) -> ExtKeysResult: ...

    async def ack(self, body: Ack, caller: str) -> AckResult: ...

    async def void(self, body: VoidRequest, caller: str) -> AckResult: ...


def caller_of(
    scope: Any,
    peers: Collection[str],
    on_refused: Callable[[str, str], None],
    issuers: Mapping[str, Sequence[x509.Certificate]] | None = None,
) -> str:
    """The kme_id of the calling KMS; Etsi020Error 401 (reported) for anyone else, and for a
    peer whose certificate was not issued by the CA of its domain (`issuers`: kme_id -> CA)."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    leaf = str(chain[0]).encode("ascii") if chain else b""
    identity = identity_of_pem(leaf) if chain else None
    if identity is None:
        who, why = str(tls.get("client_cert_name")), "the client certificate names no identity"
    elif identity.role is not Role.KM:
        who, why = identity.uri, f"{identity} is not a key manager"
    elif identity.name not in peers:
        who, why = identity.uri, f"key manager {identity.name!r} is not an interdomain peer"
    elif issuers and identity.name in issuers and not issued_by(leaf, issuers[identity.name]):
        who = identity.uri
        why = f"the certificate of key manager {identity.name!r} is not issued by its domain's CA"
    else:
        return identity.name
    on_refused(who, why)
    raise Etsi020Error(401, why)


def create_app(
    service: Etsi020Service,
    peers: Collection[str],
    on_refused: Callable[[str, str], None] = lambda who, why: None,
    issuers: Mapping[str, Sequence[x509.Certificate]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="qkd-sdn key manager — ETSI GS QKD 020 (interoperable KMS API, draft)",
        version="0.5",
        description="Hand-off of end-to-end keys between the key managers of two domains at a "
        "trusted border site, HTTPS with mutual TLS. The caller is the key manager named in "
        "its client certificate's URI SAN urn:qkdsdn:km:NODE; the acknowledgement is POSTed "
        "to ack_callback_url once the keys were relayed on (or failed).",
        docs_url=None,
        redoc_url=None,
    )
    allowed = frozenset(peers)

    async def caller(http: Request) -> str:  # async: no worker thread per request
        return caller_of(http.scope, allowed, on_refused, issuers)

    # A dependency: solved before the body is read, so a stranger learns nothing from a 400.
    who_calls = Depends(caller)

    @app.get("/kmapi/versions", response_model=Versions, summary="Supported API versions")
    async def versions() -> Versions:
        return Versions(versions=[VERSION])

    @app.post(
        API_BASE + "/ext_keys",
        response_model=ExtKeysResult,
        responses=_ERRORS,
        summary="Hand keys over to this KMS",
    )
    async def ext_keys(body: ExtKeys, who: str = who_calls) -> ExtKeysResult:
        return await service.ext_keys(body, who)

    @app.post(
        API_BASE + "/ext_keys/ack",
        response_model=AckResult,
        responses=_ERRORS,
        summary="Acknowledge keys this KMS handed over (the ack callback)",
    )
    async def ack(body: Ack, who: str = who_calls) -> AckResult:
        return await service.ack(body, who)

    @app.post(
        API_BASE + "/ext_keys/void",
        response_model=AckResult,
        responses=_ERRORS,
        summary="Invalidate keys handed over to this KMS",
    )
    async def void(body: VoidRequest, who: str = who_calls) -> AckResult:
        return await service.void(body, who)

    _install_error_handlers(app)
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _error(
    status_code: int, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return JSONResponse(status_code=status_code, content=body)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Etsi020Error)
        return _error(exc.status_code, exc.message, exc.details)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Where and why only: never echo the input (a key value) back.
        details = [
            {
                "loc": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "msg": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(d["loc"] or "body" for d in details)
        return _error(400, f"malformed request: {fields}", details)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in an ETSI 020 request: %s", type(exc).__name__)
        return _error(503, "internal error of the key manager")

    app.add_exception_handler(Etsi020Error, on_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def openapi_document() -> str:
    """The OpenAPI document of the ETSI 020 app, as committed in docs/openapi-etsi020.json."""
    app = create_app(_NoService(), ())
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


class _NoService:
    """A service that is never called: the document needs only the routes."""

    async def ext_keys(self, body: ExtKeys, caller: str) -> ExtKeysResult:
        raise Etsi020Error(503, "no service")

    async def ack(self, body: Ack, caller: str) -> AckResult:
        raise Etsi020Error(503, "no service")

    async def void(self, body: VoidRequest, caller: str) -> AckResult:
        raise Etsi020Error(503, "no service")


if __name__ == "__main__":  # python -m km.interdomain.app > docs/openapi-etsi020.json
    print(openapi_document(), end="")
