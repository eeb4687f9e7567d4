"""The device service: one supervised NETCONF session per device, behind an asyncio facade.

Each device has one worker thread (ncclient is blocking) that runs its RPCs in order, and one
supervisor task that connects with exponential backoff, reads the node's data, subscribes to
its notifications and, when the session dies, reports the device unavailable and reconnects.
Notifications arrive in ncclient's reader thread and are handed to the event loop; a slow
`<get>` every `poll_interval` seconds is only the fallback for missed performance updates.
Transactions over many devices use `run_steps` instead: one thread sends a step to all of
them, then reads all the replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from controller.devices.session import DeviceAddress, NetconfSession
from controller.errors import ControllerError, DeviceUnavailable, NodeDataError
from controller.names import QKD_NODE_FILTER
from controller.nodedata import NodeData, parse_node

log = logging.getLogger(__name__)
T = TypeVar("T")


class Sent(Protocol):
    """Requests written to a device (NetconfSession's `send_` methods give one)."""

    def wait(self) -> None: ...


class DeviceEventType(enum.Enum):
    CONNECTED = "CONNECTED"  # (re)connected, with the node's data
    POLLED = "POLLED"  # periodic refresh of the node's data
    LOST = "LOST"
    NOTIFICATION = "NOTIFICATION"


@dataclass(frozen=True)
class DeviceEvent:
    type: DeviceEventType
    name: str  # the plan's name of the device
    data: NodeData | None = None
    xml: str = ""  # the notification
    reason: str = ""


@dataclass(frozen=True)
class Backoff:
    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0

    def delays(self) -> Callable[[], float]:
        delay = [self.first]

        def next_delay() -> float:
            current = delay[0]
            delay[0] = min(current * self.factor, self.cap)
            return current

        return next_delay


class _Device:
    """The runtime of one device: its worker thread, session and supervisor."""

    def __init__(self, address: DeviceAddress) -> None:
        self.address = address
        self.worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netconf-{address.name}"
        )
        self.session: NetconfSession | None = None
        self.device_id: str | None = None
        self.lost = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


# The fallback `<get>`s of all devices together stay below this rate: on a large network each
# device is polled less often than `poll_interval` (notifications carry the news meanwhile).
MAX_POLLS_PER_S = 1.0


def poll_period(poll_interval: float, devices: int) -> float:
    """Seconds between two fallback `<get>`s of one device among `devices`. Pure."""
    return max(poll_interval, devices / MAX_POLLS_PER_S)


class DeviceService:
    def __init__(
        self,
        addresses: Sequence[DeviceAddress],
        on_event: Callable[[DeviceEvent], None],
        backoff: Backoff = Backoff(),
        poll_interval: float = 5.0,
        rpc_timeout: float = 10.0,
    ) -> None:
        self._devices = {a.name: _Device(a) for a in addresses}
        self._on_event = on_event
        self._backoff = backoff
        self._poll_interval = poll_period(poll_interval, len(self._devices))
        self._rpc_timeout = rpc_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def start(self, first_connect_timeout: float = 10.0) -> None:
        """Starts supervising every device; returns once each connected or timed out once."""
        self._loop = asyncio.get_running_loop()
        ready = [asyncio.Event() for _ in self._devices]
        for device, event in zip(self._devices.values(), ready, strict=True):
            device.task = asyncio.create_task(self._supervise(device, event))
        waits = [asyncio.create_task(e.wait()) for e in ready]
        await asyncio.wait(waits, timeout=first_connect_timeout)
        for wait in waits:
            wait.cancel()

    async def stop(self) -> None:
        """Ends every supervisor, then closes the sessions."""
        self._stopping = True  # a supervisor that misses its cancellation still ends
        tasks = [d.task for d in self._devices.values() if d.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait, not `await task`: a cancellation of stop() itself must propagate
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("device supervisor failed", exc_info=task.exception())
        closing = []
        for device in self._devices.values():
            session, device.session = device.session, None
            if session is not None:
                closing.append(self._close(device, session))
        # All at once, each in its own worker: one <close-session> after another took
        # longer than `lab down` waits with 100 devices.
        await asyncio.gather(*closing, return_exceptions=True)
        for device in self._devices.values():
            device.worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ queries

    def names(self) -> list[str]:
        return list(self._devices)

    def name_of(self, device_id: str) -> str | None:
        for name, device in self._devices.items():
            if device.device_id == device_id:
                return name
        return None

    def is_available(self, device_id: str) -> bool:
        name = self.name_of(device_id)
        return name is not None and self._devices[name].session is not None

    def address(self, name: str) -> DeviceAddress:
        return self._devices[name].address

    async def call(self, device_id: str, operation: Callable[[NetconfSession], T]) -> T:
        """Runs `operation(session)` on the device's worker thread."""
        name = self.name_of(device_id)
        if name is None:
            raise DeviceUnavailable(device_id, "unknown device (never connected)")
        device = self._devices[name]
        session = device.session
        if session is None:
            raise DeviceUnavailable(name, "not connected")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(device.worker, operation, session)

    async def run_steps(
        self, steps: Mapping[str, Callable[[NetconfSession], Sent]]
    ) -> dict[str, Exception | None]:
        """One step on several devices at once: sends every request from one thread, then
        reads every reply; the outcome per device (None: done)."""
        outcome: dict[str, Exception | None] = {}
        sessions: dict[str, NetconfSession] = {}
        for device_id in steps:
            name = self.name_of(device_id)
            session = self._devices[name].session if name is not None else None
            if session is None:
                outcome[device_id] = DeviceUnavailable(name or device_id, "not connected")
            else:
                sessions[device_id] = session

        def send_then_read() -> None:
            pending: dict[str, Sent] = {}
            for device_id, session in sessions.items():
                try:
                    pending[device_id] = steps[device_id](session)
                except Exception as error:  # reported per device
                    outcome[device_id] = error
            for device_id, sent in pending.items():
                try:
                    sent.wait()
                    outcome[device_id] = None
                except Exception as error:
                    outcome[device_id] = error

        if sessions:
            await asyncio.to_thread(send_then_read)
        return outcome

    # ------------------------------------------------------------ supervision

    def _post(self, event: DeviceEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("device event handler failed on %s", event.type)

    def _from_thread(self, device: _Device, event: DeviceEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if event.type is DeviceEventType.LOST:
            # the supervisor reports it, after marking the device unavailable
            loop.call_soon_threadsafe(device.lost.set)
        else:
            loop.call_soon_threadsafe(self._post, event)

    def _connect(self, device: _Device) -> tuple[NetconfSession, NodeData]:
        """Blocking: open, read the node, subscribe (in the device's worker thread)."""
        session = NetconfSession.open(device.address, self._rpc_timeout)
        try:
            data = parse_node(session.get(QKD_NODE_FILTER))
            name = device.address.name
            session.subscribe(
                lambda xml: self._from_thread(
                    device, DeviceEvent(DeviceEventType.NOTIFICATION, name, xml=xml)
                ),
                lambda reason: self._from_thread(
                    device, DeviceEvent(DeviceEventType.LOST, name, reason=reason)
                ),
            )
        except BaseException:
            session.close()
            raise
        return session, data

    async def _supervise(self, device: _Device, first: asyncio.Event) -> None:
        next_delay = self._backoff.delays()
        name = device.address.name
        while not self._stopping:
            device.lost.clear()
            try:
                session, data = await self._open(device)
            except (ControllerError, NodeDataError) as error:
                first.set()
                log.info("device %s: %s", name, error)
                await asyncio.sleep(next_delay())
                continue
            next_delay = self._backoff.delays()
            device.session, device.device_id = session, data.qkdn_id
            self._post(DeviceEvent(DeviceEventType.CONNECTED, name, data=data))
            first.set()
            reason = await self._watch(device, session)
            device.session = None  # before anyone hears of the loss: no RPC is sent to it now
            self._post(DeviceEvent(DeviceEventType.LOST, name, reason=reason))
            await self._close(device, session)
            await asyncio.sleep(next_delay())

    async def _open(self, device: _Device) -> tuple[NetconfSession, NodeData]:
        """Connects in the worker. A stop meanwhile waits for the attempt and closes what it
        opened: an abandoned attempt would leave a session open on the agent."""
        loop = asyncio.get_running_loop()
        attempt = loop.run_in_executor(device.worker, self._connect, device)
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(ControllerError, NodeDataError):
                session, _ = await attempt
                await self._close(device, session)
            raise

    @staticmethod
    async def _close(device: _Device, session: NetconfSession) -> None:
        """Closes the session in the worker, even when the caller is being cancelled (a
        cancelled close still queued would never run)."""
        closing = asyncio.get_running_loop().run_in_executor(device.worker, session.close)
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await closing
            raise

    async def _watch(self, device: _Device, session: NetconfSession) -> str:
        """Waits until the session dies; refreshes the node's data now and then meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns the result when
            # the loss and a cancellation (stop) arrive in the same loop step, and the
            # cancellation is lost: the supervisor then reconnected forever and stop() hung
            try:
                async with asyncio.timeout(self._poll_interval):
                    await device.lost.wait()
                return "NETCONF session lost"
            except TimeoutError:
                pass
            try:
                xml = await loop.run_in_executor(device.worker, session.get, QKD_NODE_FILTER)
                data = parse_node(xml)
            except DeviceUnavailable as error:
                return str(error)
            except ControllerError as error:
                log.warning("polling %s: %s", device.address.name, error)
                continue
            self._post(DeviceEvent(DeviceEventType.POLLED, device.address.name, data=data))
