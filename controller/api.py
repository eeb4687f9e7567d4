"""The controller's Python API: connect to the nodes, see the topology, find paths, admit,
install and withdraw key associations, and subscribe to events.

    plan = LabPlan.load(Path("state/plan.json"))
    async with Controller.from_plan(plan) as controller:
        a, b = controller.topology().resolve("qnode1"), controller.topology().resolve("qnode3")
        print(controller.paths(a, b, k=3))
        intent = await controller.install(KeyRequest(a, b, "app1", ("app2",), QoS(1000, 4000)))
        await controller.withdraw(intent.intent_id)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from controller.config import ControllerConfig
from controller.consumption import ConsumptionBook, source_readings
from controller.devices.service import DeviceEvent, DeviceEventType, DeviceService
from controller.devices.session import DeviceAddress, host_key_b64
from controller.errors import NodeDataError
from controller.events import ListenerRegistry
from controller.intents.compile import RelaySettings, Validator
from controller.intents.service import IntentEvent, IntentEventType, IntentService
from controller.model import (
    Decision,
    DeviceId,
    Intent,
    IntentId,
    IntentState,
    KeyRequest,
    Path,
    TopologySnapshot,
)
from controller.nodedata import NodeData
from controller.notifications import (
    AppDisconnected,
    ApplicationNew,
    AppQosUpdate,
    LinkDown,
    LinkPerf,
    LinkStatusEvent,
    parse_notification,
)
from controller.paths import FewestHops, PathPolicy, find_paths, policy_named
from controller.topology.events import TopologyEvent, TopologyEventType
from controller.topology.store import Perf, TopologyStore

log = logging.getLogger(__name__)


def _sae(app_id: str) -> str:
    """`app1` from `app1`, `sae:app1` or `urn:…/app1`: plan keys use SAE names."""
    return app_id.replace("/", ":").rpartition(":")[2]


@dataclass(frozen=True)
class ForcedPaths:
    """Paths pinned by the operator: per application pair ("app1>app2" → node names), or one
    path for every request between its two end nodes."""

    by_pair: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default: tuple[str, ...] | None = None

    def lookup(
        self, request: KeyRequest, snapshot: TopologySnapshot
    ) -> tuple[DeviceId, ...] | None:
        names: tuple[str, ...] | None = None
        for client in request.client_app_ids:
            for key in (
                f"{request.server_app_id}>{client}",
                f"{_sae(request.server_app_id)}>{_sae(client)}",
            ):
                names = names or self.by_pair.get(key)
        if names is None and self.default is not None:
            names = self.default
        if names is None:
            return None
        try:
            nodes = tuple(snapshot.resolve(n) for n in names)
        except KeyError as error:
            log.warning("forced path %s: %s", list(names), error)
            return None
        if (nodes[0], nodes[-1]) != (request.src, request.dst):
            return None
        return nodes


def yang_validator() -> Validator:
    """Checks compiled edits against the project's YANG models (yang.schema)."""
    from yang.schema import Schema

    schema = Schema.default()

    def validate(xml: str) -> list[str]:
        return [str(error) for error in schema.validate_config_xml(xml)]

    return validate


def addresses_from_config(config: ControllerConfig) -> list[DeviceAddress]:
    """How to reach each managed node's agent over NETCONF."""
    files = config.netconf
    password = files.password_file.read_text().strip() if files.password_file else None
    pin = host_key_b64(files.known_host_key) if files.known_host_key else None
    return [
        DeviceAddress(
            device_id=node.qkdn_id,
            name=node.name,
            host=node.netconf.host,
            port=node.netconf.port,
            username=files.username,
            password=password,
            key_file=str(files.client_key) if files.client_key else None,
            host_key_b64=pin,
        )
        for node in config.nodes
    ]


class ForeignRequests(Protocol):
    """Takes the application requests this domain cannot serve alone (controller/interdomain/
    coordinator.py)."""

    def claims(self, request: KeyRequest) -> bool: ...

    async def submit(self, request: KeyRequest) -> object: ...


class Controller:
    """Composition of the device, topology and intent services (see controller/main.py)."""

    def __init__(
        self,
        addresses: Sequence[DeviceAddress],
        policy: PathPolicy | None = None,
        relay: RelaySettings | None = None,
        forced: ForcedPaths | None = None,
        allow_preemption: bool = False,
        validate: Validator | None = None,
        poll_interval: float = 5.0,
        device_grace: float = 1.0,
    ) -> None:
        self._store = TopologyStore()
        self._device_grace = device_grace  # a session that is back within this keeps its intents
        self._forced = forced or ForcedPaths()
        self.devices = DeviceService(addresses, self._on_device_event, poll_interval=poll_interval)
        self.intent_service = IntentService(
            self._store.snapshot,
            self.devices,
            policy or FewestHops(),
            relay,
            validate,
            allow_preemption,
            self._forced.lookup,
        )
        self.topology_events: ListenerRegistry[TopologyEvent] = ListenerRegistry()
        self.topology_events.add(self._react)
        self.intent_events.add(self._freed)
        self._initial: dict[DeviceId, NodeData] = {}
        # Key bits each association's source node reports it consumed (015 app_statistics).
        self.consumption = ConsumptionBook()
        self._clock = time.monotonic
        self._started = False
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.foreign: ForeignRequests | None = None  # several domains: the coordinator

    @property
    def intent_events(self) -> ListenerRegistry[IntentEvent]:
        return self.intent_service.listeners

    @staticmethod
    def from_config(
        config: ControllerConfig,
        *,
        force_path: Sequence[str] | None = None,
        policy: str | None = None,
        allow_preemption: bool | None = None,
        poll_interval: float | None = None,
        device_grace: float = 1.0,
    ) -> Controller:
        """The controller of `config`; the keyword arguments override the file's choices."""
        return Controller(
            addresses_from_config(config),
            policy_named(policy or config.policy),
            RelaySettings(config.relay.mode, config.relay.e2e_buffer),
            ForcedPaths(dict(config.forced_paths), tuple(force_path) if force_path else None),
            config.allow_preemption if allow_preemption is None else allow_preemption,
            yang_validator(),
            config.poll_interval_s if poll_interval is None else poll_interval,
            device_grace,
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Connects to every node (each once, or until the timeout) and rebuilds the intents
        from their configurations; unreachable nodes keep being retried in the background."""
        await self.devices.start(connect_timeout)
        self.intent_service.rebuild(self._initial)
        self._started = True

    async def stop(self, grace: float = 5.0) -> None:
        """Stops reacting; a transaction under way may finish (within `grace`), since one cut
        between two nodes' commits would leave a partial installation behind."""
        self._stopping = True
        try:
            await self.settle(grace)
        except TimeoutError:
            log.warning("stopping with reactions still running: cancelled")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.devices.stop()

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    async def settle(self, timeout: float = 10.0) -> None:
        """Waits until the reactions already triggered (installs, re-routes) are done."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ API

    def topology(self) -> TopologySnapshot:
        return self._store.snapshot()

    def paths(
        self, a: DeviceId, b: DeviceId, policy: PathPolicy | str | None = None, k: int = 3
    ) -> list[Path]:
        chosen = policy_named(policy) if isinstance(policy, str) else policy
        snapshot = self.topology()
        request = KeyRequest(snapshot.resolve(a), snapshot.resolve(b))
        return find_paths(
            snapshot,
            request,
            chosen or self.intent_service.policy,
            k,
            self.intent_service.reservations(),
        )

    def admit(self, request: KeyRequest) -> Decision:
        return self.intent_service.decide(request)

    async def install(self, request: KeyRequest) -> Intent:
        return await self.intent_service.submit(request)

    async def withdraw(self, intent_id: IntentId) -> Intent:
        return await self.intent_service.withdraw(intent_id)

    def intents(self) -> list[Intent]:
        return self.intent_service.intents()

    def device_status(self) -> list[tuple[str, DeviceId | None, bool]]:
        """(name, qkdn_id once known, connected) per device of the plan."""
        result = []
        for name in self.devices.names():
            device_id = next(
                (d.device_id for d in self.topology().devices.values() if d.name == name), None
            )
            available = device_id is not None and self.devices.is_available(device_id)
            result.append((name, device_id, available))
        return result

    # ------------------------------------------------------------ reactions

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        if self._stopping:
            work.close()  # never started: nothing to undo
            return

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("controller reaction failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _post(self, events: list[TopologyEvent]) -> None:
        for event in events:
            self.topology_events.post(event)

    def _on_device_event(self, event: DeviceEvent) -> None:
        snapshot = self._store.snapshot()
        device_id = next(
            (d.device_id for d in snapshot.devices.values() if d.name == event.name), None
        )
        if event.type in (DeviceEventType.CONNECTED, DeviceEventType.POLLED):
            assert event.data is not None
            data = event.data
            known = self._store.device(data.qkdn_id)
            self._post(self._store.device_seen(data.qkdn_id, event.name, data))
            self._observe_consumption(data)
            if (
                self._started
                and known is not None
                and known.km_relay_address != data.km_relay_address
            ):  # its key manager moved: its neighbours on installed paths must learn it
                self._spawn(self.intent_service.refresh_relays(data.qkdn_id))
            if event.type is DeviceEventType.CONNECTED:
                if self._started:
                    self._spawn(self.intent_service.repair(data.qkdn_id, data))
                else:
                    self._initial[data.qkdn_id] = data
        elif event.type is DeviceEventType.LOST and device_id is not None:
            self._post(self._store.device_lost(device_id, event.reason))
        elif event.type is DeviceEventType.NOTIFICATION:
            try:
                self._on_notification(device_id, parse_notification(event.xml))
            except NodeDataError as error:
                log.warning("notification from %s: %s", event.name, error)

    def _observe_consumption(self, data: NodeData) -> None:
        """Reads what the node reports its associations consumed (as their source node)."""
        intents = self.intents()
        sources = {i.intent_id: i.request.src for i in intents}
        now = self._clock()
        readings = ((a.app_id, a.consumed_bits) for a in data.apps)
        for intent_id, bits in source_readings(data.qkdn_id, readings, sources):
            self.consumption.observe(intent_id, bits, now)
        self.consumption.keep_only(sources)

    def _on_notification(self, device_id: DeviceId | None, notification: object) -> None:
        match notification:
            case ApplicationNew() as new:
                self._application_new(device_id, new)
            case LinkDown(qkdl_id=link, reason=reason):
                self._post(self._store.link_down(link, reason or "sdqkdn_link_down"))
            case LinkPerf() as perf:
                self._post(
                    self._store.link_perf(
                        perf.qkdl_id,
                        Perf(perf.skr, perf.eskr, perf.expected_consumption, perf.qber),
                    )
                )
            case LinkStatusEvent(qkdl_id=link, status=status, message=message):
                if status.value == "ACTIVE":
                    self._post(self._store.link_up(link))
                else:
                    self._post(self._store.link_down(link, message or status.value))
            case AppQosUpdate(app_id=app_id, qos=qos):
                if any(i.intent_id == app_id for i in self.intents()):
                    self._spawn(self.intent_service.update_qos(app_id, qos))
            case AppDisconnected(app_id=app_id):
                if any(i.intent_id == app_id for i in self.intents()):
                    self._spawn(self.withdraw(app_id))
            case _:
                pass

    def _application_new(self, device_id: DeviceId | None, new: ApplicationNew) -> None:
        src = new.local_qkdn_id or device_id
        if not src or not new.remote_qkdn_id:
            log.warning("sdqkdn_application_new without local/remote node: %s", new)
            return
        try:
            request = KeyRequest(
                src,
                new.remote_qkdn_id,
                new.server_app_id,
                new.client_app_ids,
                new.qos,
                key_mode=new.key_mode,
            )
        except ValueError as error:
            log.warning("sdqkdn_application_new refused: %s", error)
            return
        if self.foreign is not None and self.foreign.claims(request):
            self._spawn(self.foreign.submit(request))
            return
        self._spawn(self.intent_service.submit_once(request))

    def _freed(self, event: IntentEvent) -> None:
        """Rate came free: requests that waited for it may fit now."""
        if event.type is IntentEventType.WITHDRAWN and any(
            i.state is IntentState.REJECTED for i in self.intents()
        ):
            self._spawn(self.intent_service.retry_waiting())

    async def _route_around(self, event: TopologyEvent) -> None:
        """A node is gone: unless it is back within the grace period (a restart, a session
        blip), move its intents around it."""
        if self._device_grace > 0:
            await asyncio.sleep(self._device_grace)
        device = self.topology().devices.get(event.subject)
        if device is None or device.available:
            return
        affected = self.intent_service.affected_by_device(event.subject)
        if affected:
            reason = f"node {device.name} lost: {event.reason}"
            await self.intent_service.reroute(affected, reason)

    def _react(self, event: TopologyEvent) -> None:
        """Re-route what a lost link or node carried; retry failed intents when one returns."""
        if event.type is TopologyEventType.LINK_DOWN:
            if self.intent_service.affected_by_link(event.subject) or self.intent_service.busy:
                self._spawn(
                    self.intent_service.reroute_link(
                        event.subject, f"link {event.subject} down: {event.reason}"
                    )
                )
        elif event.type is TopologyEventType.DEVICE_UNAVAILABLE:
            self._spawn(self._route_around(event))
        elif event.type in (TopologyEventType.LINK_UP, TopologyEventType.DEVICE_AVAILABLE):
            self._spawn(self.intent_service.retry_waiting())
