"""One uvicorn server over HTTPS on a pre-bound socket, started and stopped inside the caller's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from common.config import Address

STOP_GRACE_S = 0.5  # time given to requests in progress when the server stops
DATE_REFRESH_S = 1.0  # the Date header has a resolution of a second


def bind_socket(address: Address) -> socket.socket:
    """A listening TCP socket on `address` (IPv4 or IPv6; port 0: any free port)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (with
    # proto 0, every response waits ~40 ms for a delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address.host, address.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that hosts it owns SIGTERM; and
    without its ten wake-ups a second (an agents process hosts dozens of these servers):
    it wakes once a second to refresh the Date header, and at once when told to stop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Future[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def exit_soon(self) -> None:
        """What setting `should_exit` does, without waiting for the next tick (call it from
        the server's event loop)."""
        self.should_exit = True
        if self._wake is not None:
            _wake_up(self._wake)

    async def main_loop(self) -> None:
        # A timer and a future, not asyncio.wait_for (a task of its own at every tick).
        loop = asyncio.get_running_loop()
        while not await self.on_tick(0):  # tick 0: uvicorn refreshes its Date header
            self._wake = loop.create_future()
            timer = loop.call_later(DATE_REFRESH_S, _wake_up, self._wake)
            try:
                await self._wake
            finally:
                timer.cancel()


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class HttpsServer:
    """uvicorn serving `app` over TLS (`context()` builds the server context) on `address`;
    `await start()`, `await stop()`. `name` says which face in errors."""

    def __init__(
        self,
        app: Any,
        address: Address,
        certfile: str,
        context: Callable[[], ssl.SSLContext],
        name: str,
        http: Any = "auto",
    ) -> None:
        self.name = name
        self._sock = bind_socket(address)
        self.host = address.host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            host=address.host,
            port=self.port,
            http=http,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            ssl_certfile=certfile,
            ssl_context_factory=lambda _config, _default: context(),
            timeout_keep_alive=30,
            # an idle client that never answers the TLS close_notify would hold shutdown 30 s
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return Address(self.host, self.port).url("https")

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the {self.name} server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the {self.name} server did not start in time")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            self._sock.close()
            return
        self._server.exit_soon()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
        except TimeoutError:
            # Idle keep-alive clients that never answer the TLS close_notify: drop them.
            for connection in list(self._server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        self._sock.close()
