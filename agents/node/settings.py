"""The tunables of an emulated node (notification periods, registration and module timings)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.emulator.hardware import ModuleSettings


@dataclass(frozen=True)
class NodeSettings:
    perf_interval_s: float = 10.0  # period of sdqkdn_link_perf_update
    significant_change: float = 0.10  # an SKR change above this raises a perf update at once
    renotify_after_s: float = 5.0  # a repeated registration re-raises application_new after
    idle_release_s: float = 5.0  # an idle 004 stream may be taken over after this
    module_store_s: float = 60.0  # a module keeps unfetched key this long at its nominal rate
    # The periodic report names only the links whose performance moved by more than
    # `significant_change` since their last report, and every link at least this many periods.
    perf_heartbeat_periods: int = 6

    @property
    def modules(self) -> ModuleSettings:
        return ModuleSettings(self.idle_release_s, self.module_store_s)
