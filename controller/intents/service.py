"""The intent service: admit, install, withdraw, re-route; one change at a time.

Changes are serialised by one FIFO lock (a queue), so two intents never interleave their
NETCONF transactions. What is on which node is tracked (`placements`), so a withdrawal
removes exactly what was installed, and a node that comes back is cleaned of stale entries.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from controller.admission import admit
from controller.errors import CompileError, InstallError, UnknownIntent
from controller.events import ListenerRegistry
from controller.intents.compile import (
    DeviceEdit,
    RelaySettings,
    Validator,
    check_edits,
    compile_buffer,
    compile_install,
    compile_rejection,
    compile_withdraw,
)
from controller.intents.install import Step, apply_transaction
from controller.intents.rebuild import Placement, Placements, placements_of, rebuild_intents
from controller.model import (
    Decision,
    DeviceId,
    Intent,
    IntentId,
    IntentState,
    KeyRequest,
    LinkId,
    Path,
    QoS,
    Reservations,
    TopologySnapshot,
)
from controller.nodedata import NodeData
from controller.paths import PathPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeviceGateway(Protocol):
    def is_available(self, device_id: DeviceId) -> bool: ...

    async def run_steps(
        self, steps: Mapping[DeviceId, Step]
    ) -> Mapping[DeviceId, Exception | None]: ...


class IntentEventType(enum.Enum):
    INSTALLED = "INSTALLED"
    REJECTED = "REJECTED"
    REROUTED = "REROUTED"
    FAILED = "FAILED"
    WITHDRAWN = "WITHDRAWN"


@dataclass(frozen=True)
class IntentEvent:
    type: IntentEventType
    intent: Intent


ForcedPathLookup = Callable[[KeyRequest, TopologySnapshot], tuple[DeviceId, ...] | None]


class IntentService:
    def __init__(
        self,
        topology: Callable[[], TopologySnapshot],
        devices: DeviceGateway,
        policy: PathPolicy,
        relay: RelaySettings | None = None,
        validate: Validator | None = None,
        allow_preemption: bool = False,
        forced_path: ForcedPathLookup | None = None,
    ) -> None:
        self._topology = topology
        self._devices = devices
        self.policy = policy
        self._relay = relay or RelaySettings()
        self._validate = validate
        self._allow_preemption = allow_preemption
        self._forced_path = forced_path
        self._intents: dict[IntentId, Intent] = {}
        self._placements: Placements = {}
        # relay/buffer per association when not the default (adaptive buffers, controller/
        # buffer_service.py); every install and re-route writes it.
        self._buffers: dict[IntentId, int] = {}
        self._queue = asyncio.Lock()  # FIFO: one change at a time
        self.history = 1000  # withdrawn intents remembered
        self.listeners: ListenerRegistry[IntentEvent] = ListenerRegistry()
        # Called after each install transaction: (seconds it took, whether it committed).
        self.install_observers: list[Callable[[float, bool], None]] = []
        # Rate held outside the intents (inter-domain reservations not yet committed): counted
        # by admission like an intent's; an intent with the same id replaces its hold.
        self.holds: Callable[[], Reservations] = Reservations
        self._elsewhere: set[IntentId] = set()  # rejections decided by others: not retried here

    # ------------------------------------------------------------ reads

    def intents(self) -> list[Intent]:
        return list(self._intents.values())

    def get(self, intent_id: IntentId) -> Intent:
        try:
            return self._intents[intent_id]
        except KeyError:
            raise UnknownIntent(f"no intent {intent_id}") from None

    def placements(self, intent_id: IntentId) -> dict[DeviceId, Placement]:
        return dict(self._placements.get(intent_id, {}))

    @property
    def default_buffer(self) -> int:
        return self._relay.buffer

    def buffers(self) -> dict[IntentId, int]:
        """relay/buffer of every installed association (the default unless resized)."""
        return {
            i.intent_id: self._buffers.get(i.intent_id, self._relay.buffer)
            for i in self._intents.values()
            if i.state is IntentState.INSTALLED
        }

    def reservations(self) -> Reservations:
        held = dict(self.holds().by_intent)
        for intent in self._intents.values():
            held.pop(intent.intent_id, None)
            if (reservation := intent.reservation()) is not None:
                held[intent.intent_id] = reservation
        return Reservations(held)

    def find_active(self, request: KeyRequest) -> Intent | None:
        """An installed (or installing) intent for the same applications and nodes."""
        for intent in self._intents.values():
            if intent.state in (IntentState.INSTALLED, IntentState.INSTALLING) and (
                intent.request.src,
                intent.request.dst,
                intent.request.server_app_id,
                intent.request.client_app_ids,
            ) == (request.src, request.dst, request.server_app_id, request.client_app_ids):
                return intent
        return None

    def decide(self, request: KeyRequest) -> Decision:
        """Admission only (nothing installed)."""
        request = self._with_forced_path(request, self._topology())
        return admit(
            self._topology(), self.reservations(), request, self.policy, self._allow_preemption
        )

    # ------------------------------------------------------------ changes

    async def submit(self, request: KeyRequest, intent_id: IntentId | None = None) -> Intent:
        """Admit and install (or record the rejection on the source node)."""
        async with self._queue:
            return await self._submit(request, intent_id or Intent.new_id())

    async def submit_once(self, request: KeyRequest) -> Intent | None:
        """As `submit`, unless an intent for the same applications and nodes is already
        installed when its turn comes (a node may announce the same application twice).

        Announced with another key mode (the operator changed the master's policy), the
        installed intent takes the new mode, rewritten on every node of its path. A pqc-only
        request needs no QKD path (its keys come from the two end key managers' exchange, no
        trusted node carries them): nothing is admitted or installed, an installed intent of
        the same applications is withdrawn (its rate freed), and None is returned."""
        async with self._queue:
            active = self.find_active(request)
            if not request.needs_qkd:
                if active is not None:
                    await self._drop_for_pqc_only(active, request)
                return None
            if active is not None:
                if active.request.key_mode is not request.key_mode:
                    return await self._change_mode(active, request)
                return active
            return await self._submit(request, Intent.new_id())

    async def reject(self, request: KeyRequest, reason: str) -> Intent:
        """Records a request refused elsewhere (e.g. by another domain) as REJECTED, written on
        its source node as any rejection, so its key manager learns why; `retry_waiting`
        leaves it to whoever refused it."""
        async with self._queue:
            intent_id = Intent.new_id()
            self._elsewhere.add(intent_id)  # retry_waiting must not install it alone
            return await self._record_outcome(
                Intent(intent_id, request, IntentState.REJECTED, reason=reason)
            )

    async def withdraw(self, intent_id: IntentId) -> Intent:
        async with self._queue:
            intent = self.get(intent_id)
            if intent.state is IntentState.WITHDRAWN:
                return intent
            await self._remove_everywhere(intent, restore=True)
            return self._set(
                replace(intent, state=IntentState.WITHDRAWN), IntentEventType.WITHDRAWN
            )

    async def update_qos(self, intent_id: IntentId, qos: QoS) -> Intent:
        """New QoS for an installed intent: on its path if that can carry it, else on another
        admissible path; when none can, the intent keeps its present QoS (reason says why)."""
        async with self._queue:
            intent = self.get(intent_id)
            if intent.state is not IntentState.INSTALLED or intent.path is None:
                return intent
            request = replace(intent.request, qos=qos)
            others = self.reservations().without(intent_id)
            snapshot = self._topology()
            decision = admit(
                snapshot, others, replace(request, forced_path=intent.path.nodes), self.policy
            )
            if not decision.admitted and request.forced_path is None:
                decision = admit(snapshot, others, request, self.policy)
            if not decision.admitted or decision.path is None:
                kept = replace(intent, reason=f"QoS update refused: {decision.reason}")
                return self._set(kept, None)
            await self._move(
                replace(intent, request=request), decision.path, decision.bandwidth, "QoS update"
            )
            return self._intents[intent_id]

    async def reroute(self, intent_ids: Iterable[IntentId], reason: str) -> None:
        """Moves each installed intent to a new admissible path, or marks it FAILED."""
        async with self._queue:
            for intent_id in intent_ids:
                intent = self._intents.get(intent_id)
                if intent is not None and intent.state is IntentState.INSTALLED:
                    await self._reroute(intent, reason)

    @property
    def busy(self) -> bool:
        """A change is being made (an intent may be moving onto any link)."""
        return self._queue.locked()

    async def reroute_link(self, link_id: LinkId, reason: str) -> None:
        """`reroute` of the intents on `link_id`, picked once every queued change is done: an
        intent that a concurrent re-route moved onto that link meanwhile (its snapshot did not
        know the link was down yet) is moved again, or failed."""
        async with self._queue:
            for intent_id in self.affected_by_link(link_id):
                intent = self._intents.get(intent_id)
                if intent is not None and intent.state is IntentState.INSTALLED:
                    await self._reroute(intent, reason)

    async def move_if_better(self, intent_id: IntentId, reason: str) -> bool:
        """Moves an installed intent to the policy's best admissible path when that is another
        one; unlike `reroute`, an intent with no other admissible path stays where it is (it
        still works there). True if it moved (controller/steering_service.py)."""
        async with self._queue:
            intent = self._intents.get(intent_id)
            if intent is None or intent.state is not IntentState.INSTALLED or intent.path is None:
                return False
            decision = admit(
                self._topology(),
                self.reservations().without(intent_id),
                intent.request,
                self.policy,
            )
            if not decision.admitted or decision.path is None or decision.path == intent.path:
                return False
            await self._move(intent, decision.path, decision.bandwidth, reason)
            moved = self._intents[intent_id]
            return moved.state is IntentState.INSTALLED and moved.path == decision.path

    async def resize_buffer(self, intent_id: IntentId, buffer: int) -> bool:
        """Sets an installed association's relay/buffer on its source node, as a transaction
        (the old value restored on failure). True if the node committed it."""
        async with self._queue:
            intent = self._intents.get(intent_id)
            if intent is None or intent.state is not IntentState.INSTALLED or intent.path is None:
                return False
            src = intent.request.src
            old = self._buffers.get(intent_id, self._relay.buffer)
            if old == buffer:
                return True
            edit = {src: compile_buffer(intent_id, src, buffer)}
            undo = {src: compile_buffer(intent_id, src, old)}
            try:
                await apply_transaction(self._devices.run_steps, edit, undo, self._name)
            except (InstallError, CompileError) as error:
                log.warning("relay buffer of %s not resized: %s", intent_id, error)
                return False
            if buffer == self._relay.buffer:
                self._buffers.pop(intent_id, None)
            else:
                self._buffers[intent_id] = buffer
            return True

    async def retry_waiting(self) -> None:
        """After a link or node came back, or rate was freed: try again every intent that
        failed or was rejected (a node announces an application only once while its app
        entry, here the rejection record, exists)."""
        async with self._queue:
            for intent in list(self._intents.values()):
                if intent.intent_id in self._elsewhere:
                    continue
                if intent.state in (IntentState.FAILED, IntentState.REJECTED):
                    await self._retry(intent)

    def affected_by_link(self, link_id: LinkId) -> list[IntentId]:
        return [
            i.intent_id
            for i in self._intents.values()
            if i.state is IntentState.INSTALLED and i.path is not None and link_id in i.path.links
        ]

    def affected_by_device(self, device_id: DeviceId) -> list[IntentId]:
        return [
            i.intent_id
            for i in self._intents.values()
            if i.state is IntentState.INSTALLED and i.path is not None and device_id in i.path.nodes
        ]

    # ------------------------------------------------------------ rebuild and repair

    def rebuild(self, data: Mapping[DeviceId, NodeData]) -> list[Intent]:
        """Adopts the intents found in the nodes' configurations (after a restart)."""
        intents, placements = rebuild_intents(data, self._topology())
        for intent_id, intent in intents.items():
            if intent_id not in self._intents:
                self._intents[intent_id] = intent
            self._placements.setdefault(intent_id, {}).update(placements.get(intent_id, {}))
        for device, node in data.items():  # adaptive buffers as the source nodes hold them
            for app in node.apps:
                adopted = self._intents.get(app.app_id)
                if (
                    adopted is not None
                    and adopted.state is IntentState.INSTALLED
                    and adopted.request.src == device
                    and app.relay_buffer is not None
                    and app.relay_buffer != self._relay.buffer
                ):
                    self._buffers[app.app_id] = app.relay_buffer
        return list(intents.values())

    async def repair(self, device: DeviceId, data: NodeData) -> None:
        """A node (re)connected: adopt intents only it knows, delete what it should not hold."""
        async with self._queue:
            self.rebuild({device: data})
            edits: dict[DeviceId, DeviceEdit] = {}
            for intent_id, where in placements_of({device: data}).items():
                intent = self._intents.get(intent_id)
                if intent is None:  # unreadable entry: leave it to the operator
                    continue
                held = where[device]
                wanted = self._expected(intent, device)
                stale_link = held.link and not wanted.link
                stale_app = held.app and not wanted.app
                if stale_link or stale_app:
                    edit = compile_withdraw(intent_id, [device], stale_link, stale_app)[device]
                    edits[intent_id] = edit
            for intent_id, edit in edits.items():
                try:
                    await apply_transaction(self._devices.run_steps, {device: edit}, {}, self._name)
                except InstallError as error:
                    log.warning("repair of %s on %s: %s", intent_id, self._name(device), error)
                    continue
                self._placements.get(intent_id, {}).pop(device, None)

    async def refresh_relays(self, device: DeviceId) -> None:
        """`device`'s key manager relays at a new address: rewrite the installed intents
        through it, so that the key managers of its neighbours on each path learn it."""
        async with self._queue:
            for intent in list(self._intents.values()):
                path = intent.path
                if intent.state is not IntentState.INSTALLED or path is None:
                    continue
                if device not in path.nodes:
                    continue
                edits = self._install_edits(
                    intent.intent_id, intent.request, path, intent.bandwidth
                )
                try:
                    await self._apply(
                        intent.intent_id, edits, {}, {d: Placement(True, True) for d in path.nodes}
                    )
                except (InstallError, CompileError) as error:
                    log.warning("relay addresses of %s not rewritten: %s", intent.intent_id, error)

    # ------------------------------------------------------------ internals

    def _forget_old_withdrawals(self) -> None:
        """Keeps the history bounded: only the latest withdrawn intents are remembered (those
        still held by an unreachable node stay, so that its return can clean them)."""
        withdrawn = [
            i
            for i, x in self._intents.items()
            if x.state is IntentState.WITHDRAWN and not self._placements.get(i)
        ]
        for intent_id in withdrawn[: max(0, len(withdrawn) - self.history)]:
            del self._intents[intent_id]
            self._elsewhere.discard(intent_id)
            self._placements.pop(intent_id, None)

    def _name(self, device: DeviceId) -> str:
        return self._topology().name_of(device)

    def _install_edits(
        self, intent_id: IntentId, request: KeyRequest, path: Path, bandwidth: int
    ) -> dict[DeviceId, DeviceEdit]:
        """compile_install with the relay addresses of the key managers known now."""
        relays = {
            d.device_id: d.km_relay_address
            for d in self._topology().devices.values()
            if d.km_relay_address
        }
        relay = self._relay
        if intent_id in self._buffers:
            relay = replace(relay, buffer=self._buffers[intent_id])
        return compile_install(intent_id, request, path, bandwidth, relay, relays)

    def _set(self, intent: Intent, event: IntentEventType | None) -> Intent:
        self._intents[intent.intent_id] = intent
        if intent.state is not IntentState.INSTALLED and intent.state is not IntentState.INSTALLING:
            self._buffers.pop(intent.intent_id, None)  # a new install starts at the default
        if intent.state is IntentState.WITHDRAWN:
            self._forget_old_withdrawals()
        if event is not None:
            self.listeners.post(IntentEvent(event, intent))
        return intent

    def _with_forced_path(self, request: KeyRequest, snapshot: TopologySnapshot) -> KeyRequest:
        if request.forced_path is not None or self._forced_path is None:
            return request
        forced = self._forced_path(request, snapshot)
        return replace(request, forced_path=forced) if forced else request

    @staticmethod
    def _expected(intent: Intent, device: DeviceId) -> Placement:
        """What of `intent` the node should hold in the intent's present state."""
        if intent.state in (IntentState.INSTALLED, IntentState.INSTALLING):
            on_path = intent.path is not None and device in intent.path.nodes
            return Placement(on_path, on_path)
        if intent.state in (IntentState.REJECTED, IntentState.FAILED):
            return Placement(False, device == intent.request.src)
        return Placement(False, False)

    async def _apply(
        self,
        intent_id: IntentId,
        edits: Mapping[DeviceId, DeviceEdit],
        undo: Mapping[DeviceId, DeviceEdit],
        result: Mapping[DeviceId, Placement],
    ) -> None:
        """One transaction, then record where the intent's entries now are."""
        check_edits(edits, self._validate)
        started = time.monotonic()
        try:
            await apply_transaction(self._devices.run_steps, edits, undo, self._name)
        except BaseException:
            self._observe_install(time.monotonic() - started, False)
            raise
        self._observe_install(time.monotonic() - started, True)
        placed = self._placements.setdefault(intent_id, {})
        for device in edits:
            placement = result.get(device, Placement(False, False))
            if placement.link or placement.app:
                placed[device] = placement
            else:
                placed.pop(device, None)

    def _observe_install(self, seconds: float, committed: bool) -> None:
        for observe in self.install_observers:
            observe(seconds, committed)

    async def _submit(self, request: KeyRequest, intent_id: IntentId) -> Intent:
        snapshot = self._topology()
        request = self._with_forced_path(request, snapshot)
        decision = admit(
            snapshot,
            self.reservations().without(intent_id),  # its own hold, if any, is its to use
            request,
            self.policy,
            self._allow_preemption,
        )
        if not decision.admitted or decision.path is None:
            return await self._record_outcome(
                Intent(intent_id, request, IntentState.REJECTED, reason=decision.reason)
            )
        for victim in decision.preempted:
            await self._fail(self._intents[victim], f"pre-empted by intent {intent_id}")
        intent = self._set(
            Intent(intent_id, request, IntentState.INSTALLING, decision.path, decision.bandwidth),
            None,
        )
        path = decision.path
        try:
            edits = self._install_edits(intent_id, request, path, decision.bandwidth)
            await self._apply(
                intent_id,
                edits,
                compile_withdraw(intent_id, path.nodes),
                {d: Placement(True, True) for d in path.nodes},
            )
        except (InstallError, CompileError) as error:
            failed = replace(intent, state=IntentState.FAILED, path=None, bandwidth=0)
            return await self._record_outcome(replace(failed, reason=f"install failed: {error}"))
        return self._set(replace(intent, state=IntentState.INSTALLED), IntentEventType.INSTALLED)

    async def _change_mode(self, intent: Intent, request: KeyRequest) -> Intent:
        """The installed intent with `request`'s key mode, rewritten on its path."""
        changed = replace(intent, request=replace(intent.request, key_mode=request.key_mode))
        path = changed.path
        if path is not None:
            edits = self._install_edits(intent.intent_id, changed.request, path, intent.bandwidth)
            try:
                await self._apply(
                    intent.intent_id, edits, {}, {d: Placement(True, True) for d in path.nodes}
                )
            except (InstallError, CompileError) as error:
                log.warning("key mode of %s not rewritten: %s", intent.intent_id, error)
                return intent
        return self._set(changed, None)

    async def _drop_for_pqc_only(self, intent: Intent, request: KeyRequest) -> None:
        try:
            await self._remove_everywhere(intent, restore=True)
        except (InstallError, CompileError) as error:
            log.warning("intent %s (now pqc-only) not withdrawn: %s", intent.intent_id, error)
            return
        gone = replace(
            intent,
            request=replace(intent.request, key_mode=request.key_mode),
            state=IntentState.WITHDRAWN,
            reason="key mode pqc-only: no QKD path needed",
        )
        self._set(gone, IntentEventType.WITHDRAWN)

    async def _record_outcome(self, intent: Intent) -> Intent:
        """A rejection or failure: written on the source node for its key manager (best effort:
        the decision stands even when the node cannot be reached)."""
        state = "rejected" if intent.state is IntentState.REJECTED else "failed"
        src = intent.request.src
        held = self._placements.get(intent.intent_id, {})
        edits = compile_rejection(
            intent.intent_id,
            intent.request,
            intent.reason or state,
            state,
            delete_link=held.get(src, Placement(False, False)).link,
        )
        if self._devices.is_available(src):
            try:
                await self._apply(intent.intent_id, edits, {}, {src: Placement(False, True)})
            except (InstallError, CompileError) as error:
                log.warning(
                    "could not write the %s outcome of %s: %s", state, intent.intent_id, error
                )
        event = IntentEventType.REJECTED if state == "rejected" else IntentEventType.FAILED
        return self._set(intent, event)

    async def _remove_everywhere(self, intent: Intent, restore: bool) -> None:
        """Deletes the intent's entries from every reachable node that holds them."""
        held = {
            d: p
            for d, p in self._placements.get(intent.intent_id, {}).items()
            if self._devices.is_available(d)
        }
        edits = {
            d: compile_withdraw(intent.intent_id, [d], p.link, p.app)[d] for d, p in held.items()
        }
        undo: dict[DeviceId, DeviceEdit] = {}
        if restore and intent.path is not None and intent.state is IntentState.INSTALLED:
            undo = dict(
                self._install_edits(intent.intent_id, intent.request, intent.path, intent.bandwidth)
            )
        await self._apply(intent.intent_id, edits, undo, {})

    async def _fail(self, intent: Intent, reason: str) -> None:
        """No admissible path: remove the path's entries, say why on the source node."""
        try:
            held = {
                d: p
                for d, p in self._placements.get(intent.intent_id, {}).items()
                if d != intent.request.src and self._devices.is_available(d)
            }
            edits = {
                d: compile_withdraw(intent.intent_id, [d], p.link, p.app)[d]
                for d, p in held.items()
            }
            await self._apply(intent.intent_id, edits, {}, {})
        except (InstallError, CompileError) as error:
            log.warning("removing failed intent %s: %s", intent.intent_id, error)
        failed = replace(intent, state=IntentState.FAILED, path=None, bandwidth=0, reason=reason)
        await self._record_outcome(failed)

    async def _reroute(self, intent: Intent, reason: str) -> None:
        snapshot = self._topology()
        decision = admit(
            snapshot,
            self.reservations().without(intent.intent_id),
            intent.request,
            self.policy,
        )
        if not decision.admitted or decision.path is None:
            await self._fail(intent, f"{reason}; no admissible path: {decision.reason}")
            return
        if decision.path == intent.path and decision.bandwidth == intent.bandwidth:
            return
        await self._move(intent, decision.path, decision.bandwidth, reason)

    async def _move(self, intent: Intent, path: Path, bandwidth: int, reason: str) -> None:
        """Install on the new path and remove from nodes left behind, in one transaction."""
        intent_id = intent.intent_id
        install = self._install_edits(intent_id, intent.request, path, bandwidth)
        old = intent.path
        restore = (
            self._install_edits(intent_id, intent.request, old, intent.bandwidth)
            if old is not None
            else {}
        )
        held = self._placements.get(intent_id, {})
        edits: dict[DeviceId, DeviceEdit] = dict(install)
        undo: dict[DeviceId, DeviceEdit] = {}
        for device, placement in held.items():
            if device not in install and self._devices.is_available(device):
                edits[device] = compile_withdraw(
                    intent_id, [device], placement.link, placement.app
                )[device]
        for device in edits:
            if device in restore:
                undo[device] = restore[device]
            else:
                undo[device] = compile_withdraw(intent_id, [device])[device]
        result = {d: Placement(True, True) for d in path.nodes}
        try:
            await self._apply(intent_id, edits, undo, result)
        except (InstallError, CompileError) as error:
            await self._fail(intent, f"{reason}; re-route failed: {error}")
            return
        moved = replace(intent, path=path, bandwidth=bandwidth, reason=f"re-routed: {reason}")
        self._set(moved, IntentEventType.REROUTED)

    async def _retry(self, intent: Intent) -> None:
        snapshot = self._topology()
        decision = admit(snapshot, self.reservations(), intent.request, self.policy)
        if not decision.admitted or decision.path is None:
            return
        if not all(self._devices.is_available(d) for d in decision.path.nodes):
            return
        trial = replace(intent, state=IntentState.INSTALLING, path=None)
        self._set(trial, None)
        await self._move(trial, decision.path, decision.bandwidth, "path available again")
        current = self._intents[intent.intent_id]
        if current.state is IntentState.INSTALLING:
            self._set(replace(current, state=IntentState.INSTALLED), IntentEventType.INSTALLED)
