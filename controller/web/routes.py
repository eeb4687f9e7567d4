"""The live view's HTTP routes: GET /live (the page), /live/state (JSON), /live/events (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from controller.api import Controller
from controller.steering_service import SteeringService
from controller.web.feed import LiveFeed
from controller.web.state import live_state

RETRY_MS = 1000  # how soon a browser reconnects after the stream broke (controller restart)


def page_html() -> str:
    """The single-file page (HTML, CSS and JS written here; nothing loaded from elsewhere)."""
    return resources.files("controller.web").joinpath("live.html").read_text(encoding="utf-8")


def frame_of(
    controller: Controller,
    feed: LiveFeed,
    steering: SteeringService | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    return live_state(
        controller.topology(),
        controller.intent_service.reservations(),
        controller.intents(),
        feed.entries(),
        now(),
        steering.health if steering is not None else None,
        controller.consumption.usage(),
        controller.intent_service.buffers(),
        feed.failures,
    )


def sse(event: str, data: object) -> str:
    """One server-sent event; JSON has no raw newline, so one `data:` line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def live_router(
    controller: Controller,
    feed: LiveFeed,
    steering: SteeringService | None = None,
    period: float = 0.5,
    stopping: Callable[[], bool] = lambda: False,
) -> APIRouter:
    """Read-only routes; a frame goes out every `period` seconds (at least once a second).
    Streams end by themselves once `stopping()` says the server is shutting down (the
    browser then reconnects to whatever serves next)."""
    if not 0 < period <= 1.0:
        raise ValueError(f"live view period must be in (0, 1] s, got {period}")
    router = APIRouter()
    html = page_html()

    @router.get("/live", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/live/state")
    def state() -> dict[str, Any]:
        return frame_of(controller, feed, steering)

    @router.get("/live/events")
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield f"retry: {RETRY_MS}\n\n"
            while not stopping() and not await request.is_disconnected():
                yield sse("state", frame_of(controller, feed, steering))
                await asyncio.sleep(period)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
