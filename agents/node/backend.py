"""The datastore's `NodeBackend`: veto, apply and operational, reading the tree through the model.

The datastore hands over RFC 7951 JSON; every read of it goes through the generated typed
model (`yang.model.QkdNode`). The tree of the running configuration is parsed once per change
and kept for the `<get>`s and performance reports that follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.config_feed import ConfigFeed
from agents.emulator.hardware import NodeHardware
from agents.node import state, veto
from agents.node.consumption import ConsumptionLedger
from agents.node.events import LinkEvents
from agents.node.registrations import Registrations
from agents.node.state import AppRecord
from yang.model import ModelError, QkdNode


def parse(
    running: dict[str, Any], earlier: tuple[dict[str, Any], QkdNode] | None = None
) -> QkdNode:
    """The tree of a configuration the datastore validated (raises ModelError otherwise);
    what it has in common with `earlier` (a document and its tree) is not parsed again."""
    return QkdNode.from_json(running, reuse=earlier)


class ConfigBackend:
    """What the node does with configuration (the sysrepo change subscriber of the design)."""

    def __init__(
        self,
        hardware: NodeHardware,
        events: LinkEvents,
        registrations: Registrations,
        feed: ConfigFeed,
        emit: Callable[[list[str]], None],
        consumption: ConsumptionLedger | None = None,
    ) -> None:
        self._hardware = hardware
        self.consumption = consumption or ConsumptionLedger()
        self._events = events
        self._registrations = registrations
        self._feed = feed
        self._emit = emit
        self._running: dict[str, Any] = {}
        self._tree = QkdNode(qkdn_id=hardware.qkdn_id)
        self._apps: dict[str, AppRecord] = {}
        self._vetoed: tuple[dict[str, Any], QkdNode] | None = None
        self._seen: tuple[dict[str, Any], QkdNode] = (self._running, self._tree)

    def veto(self, new_running: dict[str, Any]) -> str | None:
        """Refuses what the emulated hardware cannot do; None accepts."""
        try:
            tree = parse(new_running, self._earlier(new_running))
        except ModelError as error:
            return f"the configuration does not fit the node model: {error}"
        self._vetoed = (new_running, tree)  # the datastore applies what it just asked about
        hardware = self._hardware
        return veto.veto(tree, hardware.qkdn_id, hardware.links, hardware.neighbours)

    def apply(self, new_running: dict[str, Any]) -> None:
        self.adopt(new_running, quiet=False)

    def adopt(self, running: dict[str, Any], quiet: bool) -> None:
        """Takes `running` as the configuration; `quiet` raises no notifications (boot)."""
        vetoed, self._vetoed = self._vetoed, None
        # The datastore applies the document it just had vetoed (the same object).
        if vetoed is not None and vetoed[0] is running:
            tree = vetoed[1]
        else:
            tree = parse(running, self._earlier(running))
        hardware = self._hardware
        with hardware.lock:
            self._running, self._tree = running, tree
            wanted = {link.qkdl_id: link.qkdl_enable_or_default for link in tree.qkd_links.qkd_link}
            events, toggled = hardware.set_enabled(wanted)
            self._track_apps(tree)
            events += self._events.overloads(hardware.modules)
        hardware.tell_peers(toggled)
        if not quiet:
            self._emit(events)
        self._feed.publish(running)

    def _earlier(self, running: dict[str, Any]) -> tuple[dict[str, Any], QkdNode] | None:
        """Running and its tree, for a parse to take the unchanged parts from; None when
        `running` is that very document (changed in place since: nothing to trust)."""
        return None if running is self._running else (self._running, self._tree)

    def _tree_of(self, running: dict[str, Any]) -> QkdNode:
        # The datastore shares one running document, never modified, until running changes
        # (and adopts every change): its tree is parsed once per change, not once per <get>.
        if running is self._running:
            return self._tree
        seen, tree = self._seen
        if running is seen:
            return tree
        tree = self._tree if running == self._running else parse(running)
        self._seen = (running, tree)
        return tree

    def _track_apps(self, tree: QkdNode) -> None:
        apps = {app.app_id: app for app in tree.qkd_applications.qkd_app}
        for app_id in [a for a in self._apps if a not in apps]:
            del self._apps[app_id]
        for app_id, app in apps.items():
            if app_id not in self._apps:
                baseline = state.delivered_bits(self.consumption, app)
                self._apps[app_id] = AppRecord(state.now_text(), baseline)
            self._registrations.configured(app.server_app_id, app.client_app_id)

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        """State leaves of <get>: statuses, link performance, application status and use."""
        tree = self._tree_of(running)
        with self._hardware.lock:
            return state.operational_state(tree, self._hardware, self._apps, self.consumption)

    def expected_consumption(self, qkdl_id: str, running: dict[str, Any] | None = None) -> int:
        """bit/s the configuration (running unless given) plans to draw from PHYS link `qkdl_id`."""
        tree = self._tree if running is None else self._tree_of(running)
        peer = self._hardware.links[qkdl_id].peer.qkdn_id
        return state.expected_consumption(tree, qkdl_id, peer)
