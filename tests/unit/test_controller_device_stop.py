"""Stopping and closing while a session dies: the supervisor must end, whatever
the order in which the loss and the stop reach it, and a dead session is closed without an
RPC that would wait out its timeout (no network: sessions are fakes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from controller.devices import service as device_service
from controller.devices.service import DeviceEvent, DeviceEventType, DeviceService
from controller.devices.session import DeviceAddress, NetconfSession
from controller.nodedata import NodeData

ADDRESS = DeviceAddress("id-1", "qnode1", "127.0.0.1", 830, "qkdsdn", password="pw")
STOP_DEADLINE_S = 5.0


class FakeSession:
    """Connects at once; the test drops it through the loss callback ncclient would call."""

    def __init__(self) -> None:
        self.on_lost: Callable[[str], None] | None = None
        self.closed = False

    def get(self, subtree: str) -> str:
        return "<data/>"

    def subscribe(
        self, on_notification: Callable[[str], None], on_error: Callable[[str], None]
    ) -> None:
        self.on_lost = on_error

    def close(self) -> None:
        self.closed = True


def node_data(xml: str) -> NodeData:
    return NodeData(ADDRESS.device_id, "", (), (), (), ())


@pytest.mark.parametrize("spins", range(6))
def test_stop_ends_the_supervisor_even_when_the_session_dies_at_that_moment(
    monkeypatch: pytest.MonkeyPatch, spins: int
) -> None:
    sessions: list[FakeSession] = []

    def open_session(address: DeviceAddress, timeout: float) -> FakeSession:
        sessions.append(FakeSession())
        return sessions[-1]

    monkeypatch.setattr(NetconfSession, "open", open_session)
    monkeypatch.setattr(device_service, "parse_node", node_data)
    events: list[DeviceEvent] = []

    async def scenario() -> None:
        devices = DeviceService([ADDRESS], events.append, poll_interval=30.0)
        await devices.start(first_connect_timeout=STOP_DEADLINE_S)
        assert devices.is_available(ADDRESS.device_id)
        [first] = sessions
        assert first.on_lost is not None
        first.on_lost("session lost: SessionCloseError")
        # the loss is handed over to the loop; the stop lands `spins` steps later, which
        # covers the step where the supervisor's wait is done but has not resumed yet
        for _ in range(spins):
            await asyncio.sleep(0)
        stopping = asyncio.create_task(devices.stop())
        done, _ = await asyncio.wait({stopping}, timeout=STOP_DEADLINE_S)
        assert stopping in done, "stop() hangs: the supervisor missed its cancellation"
        stopping.result()
        reconnects = len(sessions)
        await asyncio.sleep(0.2)  # longer than the first backoff: a live supervisor reconnects
        assert len(sessions) == reconnects
        assert [s.closed for s in sessions] == [True] * len(sessions)

    asyncio.run(scenario())
    assert events[0].type is DeviceEventType.CONNECTED


class FakeTransport:
    """Stands in for ncclient's SSHSession: keeps the listener, records close()."""

    def __init__(self) -> None:
        self.listeners: list[Any] = []
        self.closed = False

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def close(self) -> None:
        self.closed = True


class FakeManager:
    """ncclient's Manager as a session that has just died: still `connected`, since its
    reader thread has not finished closing yet."""

    def __init__(self) -> None:
        self.server_capabilities = ["urn:ietf:params:netconf:capability:notification:1.0"]
        self.connected = True
        self.calls: list[str] = []

    def create_subscription(self) -> None:
        self.calls.append("create-subscription")

    def close_session(self) -> None:
        self.calls.append("close-session")


def test_a_session_known_lost_is_closed_without_an_rpc_nobody_would_answer() -> None:
    transport, handle = FakeTransport(), FakeManager()
    netconf = NetconfSession(ADDRESS, transport, handle)
    reasons: list[str] = []
    netconf.subscribe(lambda xml: None, reasons.append)
    [listener] = transport.listeners
    listener.errback(EOFError("channel closed"))
    assert reasons == ["session lost: EOFError: channel closed"]
    netconf.close()
    assert handle.calls == ["create-subscription"]
    assert transport.closed


def test_a_live_session_is_closed_with_close_session() -> None:
    transport, handle = FakeTransport(), FakeManager()
    netconf = NetconfSession(ADDRESS, transport, handle)
    netconf.close()
    assert handle.calls == ["close-session"]


def test_stop_closes_the_sessions_of_many_devices_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each <close-session> takes its round trip: one after another, 100 devices outlasted
    `lab down`'s grace and the controller was SIGKILLed."""
    close_s, count = 0.2, 20

    class SlowClose(FakeSession):
        def close(self) -> None:
            time.sleep(close_s)  # a worker thread waits for the device's answer
            super().close()

    sessions: list[SlowClose] = []

    def open_session(address: DeviceAddress, timeout: float) -> SlowClose:
        sessions.append(SlowClose())
        return sessions[-1]

    monkeypatch.setattr(NetconfSession, "open", open_session)
    monkeypatch.setattr(device_service, "parse_node", node_data)
    addresses = [
        DeviceAddress(f"id-{i}", f"qnode{i}", "127.0.0.1", 830, "qkdsdn", password="pw")
        for i in range(count)
    ]

    async def scenario() -> float:
        devices = DeviceService(addresses, lambda event: None, poll_interval=30.0)
        await devices.start(first_connect_timeout=STOP_DEADLINE_S)
        began = time.monotonic()
        await devices.stop()
        return time.monotonic() - began

    took = asyncio.run(scenario())
    assert len(sessions) == count and all(s.closed for s in sessions)
    assert took < count * close_s / 2  # one after another it takes count * close_s
