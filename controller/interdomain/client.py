"""The HTTP client of a peer domain's controller (`/interdomain/*`, bearer token of role peer);
every call bounded by `peer_timeout_s` (a commit, which installs over NETCONF, by
COMMIT_FACTOR times that); a peer that does not answer is status 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from controller.api_token import ApiToken
from controller.interdomain.reservations import ReservationRequest
from controller.interdomain.view import DomainView, ViewError

COMMIT_FACTOR = 3.0


@dataclass(frozen=True)
class PeerAnswer:
    status: int  # the HTTP status; 0 when the peer did not answer in time
    body: dict[str, Any]

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", ""))

    @property
    def state(self) -> str:
        return str(self.body.get("state", ""))


class HttpPeer:
    """One peer domain's controller API."""

    def __init__(self, name: str, url: str, token: ApiToken, timeout_s: float) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token.value.decode()}"},
            timeout=timeout_s,
        )

    def __repr__(self) -> str:  # never the token
        return f"HttpPeer({self.name}, {self._client.base_url})"

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, body: Any = None, factor: float = 1.0
    ) -> PeerAnswer:
        try:
            response = await self._client.request(
                method, path, json=body, timeout=self.timeout_s * factor
            )
        except httpx.HTTPError as error:
            return PeerAnswer(
                0, {"detail": f"domain {self.name} did not answer: {type(error).__name__}"}
            )
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {"detail": "not a JSON object"}
        return PeerAnswer(response.status_code, data)

    async def view(self) -> DomainView:
        """The peer's abstract view; ViewError when it did not answer or sent a bad one."""
        answer = await self._call("GET", "/interdomain/view")
        if answer.status != 200:
            raise ViewError(answer.detail or f"HTTP {answer.status}")
        return DomainView.from_json(answer.body)

    async def push_view(self, view: DomainView) -> PeerAnswer:
        return await self._call("POST", "/interdomain/view", view.to_json())

    async def reserve(self, request: ReservationRequest) -> PeerAnswer:
        return await self._call("POST", "/interdomain/reservations", request.to_json())

    async def commit(self, ident: str) -> PeerAnswer:
        return await self._call(
            "POST", f"/interdomain/reservations/{ident}/commit", factor=COMMIT_FACTOR
        )

    async def release(self, ident: str) -> PeerAnswer:
        return await self._call("DELETE", f"/interdomain/reservations/{ident}")

    async def reservations(self) -> list[dict[str, Any]] | None:
        """The reservations this domain holds at the peer; None when it did not answer."""
        try:
            response = await self._client.get("/interdomain/reservations")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return [h for h in data if isinstance(h, dict)] if isinstance(data, list) else None
