"""One emulated QKD node: its hardware, configuration backend, ETSI 004 streams, NodeLink and events.

`QkdNode` composes the parts, each of one job, and is what the agent process and the
datastore hold: the datastore's `NodeBackend` (agents/node/backend.py), the emulated modules
and faults (agents/emulator/hardware.py), the module side of ETSI 004 (key_streams.py),
NodeLink registrations (registrations.py) and ETSI 015 notifications (events.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agents.config import AgentConfig
from agents.config_feed import ConfigFeed
from agents.emulator.hardware import LinkReport, NodeHardware, NodeStatus
from agents.emulator.qkd_module import KeyResult, OpenResult, QkdModule, Status
from agents.emulator.site import Site
from agents.initial_config import initial_running
from agents.node.backend import ConfigBackend
from agents.node.consumption import PairReport
from agents.node.events import LinkEvents
from agents.node.key_streams import KeyStreams
from agents.node.registrations import Registrations
from agents.node.settings import NodeSettings
from agents.notifications import AppRequest, Performance
from common.tracing import Tracer

Publish = Callable[[str], None]


class QkdNode:
    """The emulated node of an agent configuration."""

    def __init__(
        self,
        config: AgentConfig,
        site: Site,
        publish: Publish | None = None,
        settings: NodeSettings | None = None,
        tracer: Tracer | None = None,
        positions_dir: Path | None = None,
        durable_positions: bool = True,
    ) -> None:
        """`positions_dir`: where each module end records how far it handed out keys (one
        file per PHYS link); None keeps nothing, so a restarted stream starts again at 0."""
        self.config = config
        self.name = config.node
        self.qkdn_id = config.qkdn_id
        self.site = site
        self.settings = settings = settings or NodeSettings()
        tracer = tracer or Tracer(f"agent:{self.name}", None)
        self.feed = ConfigFeed()
        self.hardware = hardware = NodeHardware(
            config, site, settings.modules, positions_dir, durable_positions
        )
        self.events = events = LinkEvents(
            hardware, self.expected_consumption, settings, tracer, publish
        )
        hardware.attach(events.of_change, events.emit)
        self.registrations = Registrations(hardware, settings.renotify_after_s, tracer, events.emit)
        self.backend = ConfigBackend(hardware, events, self.registrations, self.feed, events.emit)
        self.key_streams = KeyStreams(hardware)

    def __repr__(self) -> str:
        return f"QkdNode({self.name}, {self.qkdn_id})"

    @property
    def status(self) -> NodeStatus:
        return self.hardware.status

    # ---- composition -------------------------------------------------------------------------

    def initial_running(self) -> dict[str, Any]:
        """The configuration to boot with when nothing is persisted."""
        return initial_running(self.config)

    def start(self, running: dict[str, Any]) -> None:
        """Adopts the datastore's running config once composed (no change callback for it)."""
        self.backend.adopt(running, quiet=True)

    def module(self, qkdl_id: str) -> QkdModule | None:
        return self.hardware.module(qkdl_id)

    @property
    def modules(self) -> tuple[QkdModule, ...]:
        return tuple(self.hardware.modules.values())

    def set_publisher(self, publish: Publish | None) -> None:
        self.events.set_publisher(publish)

    # ---- NodeBackend (agents/node/backend.py) -------------------------------------------------

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return self.backend.veto(new_running)

    def apply(self, new_running: dict[str, Any]) -> None:
        self.backend.apply(new_running)

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return self.backend.operational(running)

    def expected_consumption(self, qkdl_id: str, running: dict[str, Any] | None = None) -> int:
        return self.backend.expected_consumption(qkdl_id, running)

    # ---- faults (agents/emulator/hardware.py) -------------------------------------------------

    def set_link(self, qkdl_id: str, up: bool) -> LinkReport:
        return self.hardware.set_link(qkdl_id, up)

    def set_eavesdropper(self, qkdl_id: str, fraction: float) -> LinkReport:
        return self.hardware.set_eavesdropper(qkdl_id, fraction)

    def stop(self) -> None:
        """The node fails: its modules stop, its peers in this process see their links go."""
        if self.hardware.stop():
            self.feed.close()

    def report(self, qkdl_id: str) -> LinkReport:
        return self.hardware.report(qkdl_id)

    def reports(self) -> list[LinkReport]:
        return self.hardware.reports()

    @property
    def link_watchers(self) -> list[Callable[[str, bool], None]]:
        """Told (qkdl_id, distilling) when a PHYS link stops or starts distilling key."""
        return self.events.link_watchers

    def telemetry(self) -> list[tuple[LinkReport, Performance]]:
        """Each PHYS link's report and 015 performance, read together (for the metrics)."""
        with self.hardware.lock:
            return [
                (self.hardware.report(q), self.events.performance(q)) for q in self.hardware.modules
            ]

    # ---- ETSI 004, module side (agents/node/key_streams.py) -----------------------------------

    def open_connect(
        self, source: str, destination: str, key_stream_id: str, chunk_bytes: int, owner: str
    ) -> OpenResult:
        return self.key_streams.open_connect(source, destination, key_stream_id, chunk_bytes, owner)

    def get_key(self, key_stream_id: str, index: int | None) -> KeyResult:
        return self.key_streams.get_key(key_stream_id, index)

    def reserve_through(self, key_stream_id: str, index: int) -> str:
        return self.key_streams.reserve_through(key_stream_id, index)

    def ready_in(self, key_stream_id: str, index: int | None) -> float | None:
        return self.key_streams.ready_in(key_stream_id, index)

    def close_stream(self, key_stream_id: str) -> Status:
        return self.key_streams.close(key_stream_id)

    # ---- NodeLink (agents/node/registrations.py) ----------------------------------------------

    def register_application(self, request: AppRequest) -> tuple[bool, str]:
        return self.registrations.register(request)

    def report_consumption(self, run: str, pairs: Iterable[PairReport]) -> str:
        """The key manager's delivered bits per SAE pair ("" taken, else why not)."""
        return self.backend.consumption.report(run, pairs)

    # ---- notifications (agents/node/events.py) ------------------------------------------------

    def performance(self, qkdl_id: str) -> Performance:
        return self.events.performance(qkdl_id)

    def perf_updates(self) -> list[str]:
        return self.events.perf_updates()

    async def run_perf_updates(self) -> None:
        await self.events.run_perf_updates()
