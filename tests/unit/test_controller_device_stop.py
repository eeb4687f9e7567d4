"""Stopping the device service while a session dies: the supervisor must end, whatever
the order in which the loss and the stop reach it (no network: the session is a fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
