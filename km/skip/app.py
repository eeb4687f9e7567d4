"""The SKIP HTTPS edge: a bare ASGI app handing each request to `SkipService.respond`.

The caller's SAE_ID comes from the TLS client certificate, which `km/etsi014/server.py`
(`MutualTlsServer`, reused as is) puts into the ASGI scope. No framework: SKIP has four GET
resources and a framework's request parsing cost more than the key (bench/skip.py).
"""

from __future__ import annotations

from typing import Any

from km.etsi014.app import sae_id_from_scope
from km.skip.core import SkipService


class SkipApp:
    def __init__(self, service: SkipService) -> None:
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        response = await self.service.respond(
            sae_id_from_scope(scope), scope["method"], scope["path"], scope["query_string"]
        )
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app(service: SkipService) -> SkipApp:
    return SkipApp(service)
