"""Intent service and all-or-none transactions against in-memory devices (no sockets)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import networkx as nx
import pytest

from controller.errors import ControllerError, DeviceUnavailable, RpcFailed, UnknownIntent
from controller.intents.install import CandidateOps, Pending
from controller.intents.service import IntentEventType, IntentService
from controller.model import (
    Device,
    IntentState,
    KeyRequest,
    LinkStatus,
    QoS,
    TopologySnapshot,
)
from controller.names import NC_NS, q
from controller.nodedata import parse_node
from controller.paths import FewestHops
from controller.topology.synthetic import snapshot_from_graph
from yang.model import KeyMode

T = TypeVar("T")
Entry = tuple[str, str]  # ("link" | "app", id)


@dataclass
class FakeNode:
    """A NETCONF candidate/running pair holding only which entries exist (and their XML)."""

    name: str
    running: dict[Entry, str] = field(default_factory=dict)
    candidate: dict[Entry, str] | None = None
    locked: bool = False
    fail_on: str | None = None  # "lock" | "edit" (incl. the node's validation) | "commit"
    calls: list[str] = field(default_factory=list)

    def _maybe_fail(self, step: str) -> None:
        self.calls.append(step)
        if self.fail_on == step:
            raise RpcFailed(self.name, f"{step} refused (injected)")

    def lock(self) -> None:
        self._maybe_fail("lock")
        assert not self.locked
        self.locked = True
        self.candidate = dict(self.running)

    def unlock(self) -> None:
        self.calls.append("unlock")
        self.locked = False

    def edit_candidate(self, config: str) -> None:
        self._maybe_fail("edit")
        assert self.locked and self.candidate is not None
        root = ET.fromstring(config)
        for tag, kind, key in (("qkd_link", "link", "qkdl_id"), ("qkd_app", "app", "app_id")):
            for entry in root.iter(q(tag)):
                ident = (kind, entry.findtext(q(key)) or "")
                operation = entry.get(f"{{{NC_NS}}}operation")
                if operation == "delete":
                    if ident not in self.candidate:
                        raise RpcFailed(self.name, f"data-missing {ident}")
                    del self.candidate[ident]
                else:
                    self.candidate[ident] = ET.tostring(entry, encoding="unicode")

    def commit(self) -> None:
        self._maybe_fail("commit")
        assert self.candidate is not None
        self.running = dict(self.candidate)

    # what a transaction calls: the step runs now, its outcome is read by `wait`
    def send_lock(self) -> Done:
        return Done.of(self.lock)

    def send_edit(self, config: str) -> Done:
        return Done.of(lambda: self.edit_candidate(config))

    def send_commit_and_unlock(self) -> Done:
        def both() -> None:
            try:
                self.commit()
            finally:
                self.unlock()

        return Done.of(both)

    def send_discard(self) -> Done:
        return Done.of(self.discard_changes)

    def send_discard_and_unlock(self) -> Done:
        def both() -> None:
            self.discard_changes()
            self.unlock()

        return Done.of(both)

    def discard_changes(self) -> None:
        self.calls.append("discard")
        self.candidate = dict(self.running)


@dataclass(frozen=True)
class Done:
    """A step already run on a fake node; `wait` raises what it raised."""

    error: ControllerError | None = None

    @staticmethod
    def of(step: Callable[[], None]) -> Done:
        try:
            step()
        except ControllerError as error:
            return Done(error)
        return Done()

    def wait(self) -> None:
        if self.error is not None:
            raise self.error


class FakeDevices:
    def __init__(self, names: dict[str, str]) -> None:
        self.nodes = {device_id: FakeNode(name) for device_id, name in names.items()}
        self.away: set[str] = set()

    def is_available(self, device_id: str) -> bool:
        return device_id in self.nodes and device_id not in self.away

    async def run_steps(
        self, steps: Mapping[str, Callable[[CandidateOps], Pending]]
    ) -> dict[str, Exception | None]:
        await asyncio.sleep(0)  # let other tasks run between steps, as real I/O does
        outcome: dict[str, Exception | None] = {}
        for device_id, step in steps.items():
            if not self.is_available(device_id):
                outcome[device_id] = DeviceUnavailable(device_id, "not connected")
                continue
            try:
                step(self.nodes[device_id]).wait()
                outcome[device_id] = None
            except ControllerError as error:
                outcome[device_id] = error
        return outcome


class Net:
    """A 4-node ring a-b-c-d-a (and a chord a-c for the direct path)."""

    def __init__(self, rate: int = 10_000) -> None:
        graph = nx.cycle_graph(["a", "b", "c", "d"])
        self.snapshot, self.ids = snapshot_from_graph(graph, rate=lambda x, y, d: rate)
        self.devices = FakeDevices({i: n for n, i in self.ids.items()})
        self.service = IntentService(lambda: self.snapshot, self.devices, FewestHops())
        self.events: list[tuple[IntentEventType, IntentState]] = []
        self.service.listeners.add(lambda e: self.events.append((e.type, e.intent.state)))

    def node(self, name: str) -> FakeNode:
        return self.devices.nodes[self.ids[name]]

    def entries(self) -> dict[str, set[Entry]]:
        return {n: set(self.node(n).running) for n in self.ids}

    def cut(self, a: str, b: str) -> str:
        link = self.snapshot.links_between(self.ids[a], self.ids[b])[0]
        links = dict(self.snapshot.links)
        links[link.qkdl_id] = replace(link, status=LinkStatus.OFF)
        self.snapshot = TopologySnapshot(self.snapshot.devices, links)
        return link.qkdl_id

    def request(self, src: str, dst: str, **qos: int) -> KeyRequest:
        return KeyRequest(self.ids[src], self.ids[dst], "app1", ("app2",), QoS(**qos))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_install_puts_link_and_app_on_every_node_of_the_path() -> None:
    net = Net()
    intent = run(
        net.service.submit(net.request("a", "c", min_bandwidth=1_000, max_bandwidth=2_000))
    )
    assert intent.state is IntentState.INSTALLED and intent.path is not None
    assert intent.bandwidth == 2_000
    on_path = {net.snapshot.name_of(n) for n in intent.path.nodes}
    assert len(on_path) == 3
    for name, entries in net.entries().items():
        expected = (
            {("link", intent.intent_id), ("app", intent.intent_id)} if name in on_path else set()
        )
        assert entries == expected
    for name in on_path:
        node = net.node(name)
        assert node.calls[:3] == ["lock", "edit", "commit"]
        assert not node.locked
    assert net.events == [(IntentEventType.INSTALLED, IntentState.INSTALLED)]
    assert net.service.reservations().reserved_on(intent.path.links[0]) == 2_000


@pytest.mark.parametrize("step", ["lock", "edit", "commit"])
def test_a_failure_on_the_last_node_leaves_no_partial_state(step: str) -> None:
    net = Net()
    net.node("c").fail_on = step
    intent = run(net.service.submit(net.request("a", "c")))
    assert intent.state is IntentState.FAILED
    assert "c: " in intent.reason and "injected" in intent.reason
    entries = net.entries()
    # only the outcome record on the source node remains, no VIRT link anywhere
    assert entries["a"] == {("app", intent.intent_id)}
    assert all(not e for n, e in entries.items() if n != "a")
    assert all(not net.node(n).locked for n in net.ids)
    app_xml = net.node("a").running[("app", intent.intent_id)]
    assert "<ns0:state>failed</ns0:state>" in app_xml or ">failed<" in app_xml
    assert net.service.reservations().by_intent == {}


def test_withdraw_removes_exactly_what_was_installed() -> None:
    net = Net()
    net.node("d").running[("app", "someone-else")] = "<qkd_app/>"
    intent = run(net.service.submit(net.request("a", "c")))
    withdrawn = run(net.service.withdraw(intent.intent_id))
    assert withdrawn.state is IntentState.WITHDRAWN
    assert net.entries() == {"a": set(), "b": set(), "c": set(), "d": {("app", "someone-else")}}
    assert net.service.reservations().by_intent == {}
    with pytest.raises(UnknownIntent):
        run(net.service.withdraw("nope"))


def test_rejection_is_written_on_the_source_node_only() -> None:
    net = Net(rate=1_000)
    intent = run(net.service.submit(net.request("a", "c", min_bandwidth=5_000)))
    assert intent.state is IntentState.REJECTED
    assert "1000 bit/s free" in intent.reason
    assert net.entries() == {"a": {("app", intent.intent_id)}, "b": set(), "c": set(), "d": set()}
    data = parse_node(
        f'<qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"><qkdn_id>{net.ids["a"]}</qkdn_id>'
        f"<qkd_applications>{net.node('a').running[('app', intent.intent_id)]}</qkd_applications></qkd_node>"
    )
    assert data.apps[0].admission_state == "rejected"
    assert data.apps[0].admission_reason == intent.reason
    run(net.service.withdraw(intent.intent_id))
    assert net.entries()["a"] == set()


def test_link_cut_reroutes_in_one_transaction() -> None:
    net = Net()
    intent = run(net.service.submit(net.request("a", "c", min_bandwidth=100)))
    assert intent.path is not None
    via = net.snapshot.name_of(intent.path.nodes[1])
    other = "d" if via == "b" else "b"
    cut = net.cut("a", via)
    assert net.service.affected_by_link(cut) == [intent.intent_id]
    run(net.service.reroute([intent.intent_id], "link down"))
    moved = net.service.get(intent.intent_id)
    assert moved.state is IntentState.INSTALLED and moved.path is not None
    assert [net.snapshot.name_of(n) for n in moved.path.nodes] == ["a", other, "c"]
    both = {("link", intent.intent_id), ("app", intent.intent_id)}
    assert net.entries() == {"a": both, other: both, "c": both, via: set()}
    assert (IntentEventType.REROUTED, IntentState.INSTALLED) in net.events


def test_no_path_left_marks_the_intent_failed_with_a_reason() -> None:
    net = Net()
    intent = run(net.service.submit(net.request("a", "b")))
    net.cut("a", "b")
    net.cut("a", "d")
    run(net.service.reroute([intent.intent_id], "link down"))
    failed = net.service.get(intent.intent_id)
    assert failed.state is IntentState.FAILED
    assert (
        "no admissible path" in failed.reason and "no usable path between a and b" in failed.reason
    )
    assert net.entries() == {"a": {("app", intent.intent_id)}, "b": set(), "c": set(), "d": set()}


def test_unavailable_node_on_the_old_path_is_repaired_when_it_returns() -> None:
    net = Net()
    intent = run(net.service.submit(net.request("a", "c")))
    assert intent.path is not None
    via_id = intent.path.nodes[1]
    via = net.snapshot.name_of(via_id)
    net.devices.away.add(via_id)
    devices = dict(net.snapshot.devices)
    devices[via_id] = Device(via_id, via, available=False)
    net.snapshot = TopologySnapshot(devices, net.snapshot.links)
    run(net.service.reroute(net.service.affected_by_device(via_id), "node lost"))
    assert net.node(via).running  # stale entries remain while it is away
    net.devices.away.clear()
    xml = (
        f'<qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"><qkdn_id>{via_id}</qkdn_id>'
        f"<qkd_links>{net.node(via).running[('link', intent.intent_id)]}</qkd_links>"
        f"<qkd_applications>{net.node(via).running[('app', intent.intent_id)]}</qkd_applications>"
        "</qkd_node>"
    )
    run(net.service.repair(via_id, parse_node(xml)))
    assert net.node(via).running == {}


def test_one_change_at_a_time() -> None:
    net = Net()

    async def both() -> None:
        first = net.request("a", "c")
        second = KeyRequest(net.ids["b"], net.ids["d"], "app3", ("app4",))
        results = await asyncio.gather(net.service.submit(first), net.service.submit(second))
        assert all(r.state is IntentState.INSTALLED for r in results)

    run(both())
    # every node ends unlocked and no lock was ever taken twice (FakeNode asserts that)
    assert all(not n.locked for n in net.devices.nodes.values())


def test_rebuild_from_node_configurations() -> None:
    net = Net()
    intent = run(net.service.submit(net.request("a", "c", min_bandwidth=300, max_bandwidth=700)))
    data = {}
    for name, device_id in net.ids.items():
        node = net.node(name)
        links = "".join(x for (k, _), x in node.running.items() if k == "link")
        apps = "".join(x for (k, _), x in node.running.items() if k == "app")
        data[device_id] = parse_node(
            f'<qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"><qkdn_id>{device_id}</qkdn_id>'
            f"<qkd_links>{links}</qkd_links><qkd_applications>{apps}</qkd_applications></qkd_node>"
        )
    fresh = IntentService(lambda: net.snapshot, net.devices, FewestHops())
    [rebuilt] = fresh.rebuild(data)
    assert rebuilt.intent_id == intent.intent_id
    assert rebuilt.state is IntentState.INSTALLED
    assert rebuilt.path == intent.path and rebuilt.bandwidth == 700
    assert rebuilt.request.qos == intent.request.qos
    assert (rebuilt.request.server_app_id, rebuilt.request.client_app_ids) == ("app1", ("app2",))
    assert fresh.reservations() == net.service.reservations()
    run(fresh.withdraw(intent.intent_id))
    assert all(not e for e in net.entries().values())


def test_the_same_application_announced_twice_gives_one_intent() -> None:
    net = Net()

    async def twice() -> tuple[str, str]:
        request = net.request("a", "c")
        first, second = await asyncio.gather(
            net.service.submit_once(request), net.service.submit_once(request)
        )
        return first.intent_id, second.intent_id

    first, second = run(twice())
    assert first == second
    assert len(net.service.intents()) == 1


def test_withdrawn_history_is_bounded() -> None:
    net = Net()
    net.service.history = 2
    ids = []
    for _ in range(4):
        intent = run(net.service.submit(net.request("a", "c")))
        run(net.service.withdraw(intent.intent_id))
        ids.append(intent.intent_id)
    assert [i.intent_id for i in net.service.intents()] == ids[-2:]


def test_a_higher_priority_request_preempts_when_allowed() -> None:
    net = Net(rate=10_000)
    net.service = IntentService(
        lambda: net.snapshot, net.devices, FewestHops(), allow_preemption=True
    )
    net.cut("a", "d")  # a–b is then the only way between a and b
    low = run(net.service.submit(net.request("a", "b", min_bandwidth=8_000, priority=1)))
    assert low.state is IntentState.INSTALLED
    high = run(net.service.submit(net.request("a", "b", min_bandwidth=5_000, priority=7)))
    assert high.state is IntentState.INSTALLED
    preempted = net.service.get(low.intent_id)
    assert preempted.state is IntentState.FAILED
    assert preempted.reason == f"pre-empted by intent {high.intent_id}"
    assert net.entries()["b"] == {("link", high.intent_id), ("app", high.intent_id)}
    assert ("app", low.intent_id) in net.entries()["a"]  # its failure record, for its KM


def test_a_rejected_request_is_installed_once_rate_is_freed() -> None:
    net = Net(rate=10_000)
    net.cut("a", "d")
    net.cut("b", "c")  # a–b is then the only way between a and b
    hog = run(net.service.submit(net.request("a", "b", min_bandwidth=9_000)))
    waiting = run(net.service.submit(net.request("a", "b", min_bandwidth=5_000)))
    assert waiting.state is IntentState.REJECTED
    run(net.service.retry_waiting())
    assert net.service.get(waiting.intent_id).state is IntentState.REJECTED
    run(net.service.withdraw(hog.intent_id))
    run(net.service.retry_waiting())
    installed = net.service.get(waiting.intent_id)
    assert installed.state is IntentState.INSTALLED and installed.bandwidth == 5_000
    both = {("link", waiting.intent_id), ("app", waiting.intent_id)}
    assert net.entries()["a"] == both and net.entries()["b"] == both


def test_a_qos_update_rewrites_the_entries_or_is_refused_with_a_reason() -> None:
    net = Net(rate=10_000)
    intent = run(
        net.service.submit(net.request("a", "c", min_bandwidth=1_000, max_bandwidth=2_000))
    )
    updated = run(net.service.update_qos(intent.intent_id, QoS(3_000, 6_000, priority=2)))
    assert updated.state is IntentState.INSTALLED
    assert updated.bandwidth == 6_000 and updated.path == intent.path
    assert updated.request.qos == QoS(3_000, 6_000, priority=2)
    app = net.node("a").running[("app", intent.intent_id)]
    assert ">6000<" in app and ">3000<" in app
    link = net.node("a").running[("link", intent.intent_id)]
    assert ">6000<" in link  # virt_bandwidth
    refused = run(net.service.update_qos(intent.intent_id, QoS(min_bandwidth=50_000)))
    assert refused.bandwidth == 6_000 and refused.request.qos.min_bandwidth == 3_000
    assert refused.reason.startswith("QoS update refused: ")


def test_a_link_that_goes_down_while_an_intent_moves_onto_it_is_left_again() -> None:
    net = Net()
    intent = run(net.service.submit(net.request("a", "c", min_bandwidth=100)))
    assert intent.path is not None
    via = net.snapshot.name_of(intent.path.nodes[1])
    other = "d" if via == "b" else "b"
    net.cut("a", via)
    spawned: list[asyncio.Task[None]] = []
    node = net.node(other)
    lock = node.lock

    def lock_while_the_link_fails() -> None:
        # The move onto a-other-c is being installed when a-other goes down too: the intent
        # is not on that link yet, so a decision taken now would leave it there.
        if not spawned:
            second = net.cut("a", other)
            assert net.service.affected_by_link(second) == []
            spawned.append(
                asyncio.get_running_loop().create_task(
                    net.service.reroute_link(second, "second link down")
                )
            )
        lock()

    node.lock = lock_while_the_link_fails  # type: ignore[method-assign]

    async def both_cuts() -> None:
        await net.service.reroute([intent.intent_id], "first link down")
        await spawned[0]

    run(both_cuts())
    final = net.service.get(intent.intent_id)
    assert final.state is IntentState.FAILED and "second link down" in final.reason


def test_a_changed_key_mode_rewrites_the_installed_intent_on_its_path() -> None:
    net = Net()
    first = run(net.service.submit_once(net.request("a", "c")))
    assert first is not None and first.path is not None
    assert first.request.key_mode is KeyMode.QKD_PREFERRED
    hybrid = replace(net.request("a", "c"), key_mode=KeyMode.HYBRID_STRICT)
    changed = run(net.service.submit_once(hybrid))
    assert changed is not None and changed.intent_id == first.intent_id
    assert changed.path == first.path and changed.request.key_mode is KeyMode.HYBRID_STRICT
    for device in first.path.nodes:
        app = net.devices.nodes[device].running[("app", first.intent_id)]
        assert ">hybrid-strict</" in app
    assert run(net.service.submit_once(hybrid)) == changed  # the same mode again: no change


def test_pqc_only_installs_nothing_and_withdraws_a_path_of_the_same_apps() -> None:
    net = Net()
    pqc = replace(net.request("a", "c"), key_mode=KeyMode.PQC_ONLY)
    assert run(net.service.submit_once(pqc)) is None
    assert net.service.intents() == [] and all(not e for e in net.entries().values())
    installed = run(net.service.submit_once(net.request("a", "c")))
    assert installed is not None and installed.state is IntentState.INSTALLED
    assert run(net.service.submit_once(pqc)) is None
    [gone] = net.service.intents()
    assert gone.state is IntentState.WITHDRAWN and "pqc-only" in gone.reason
    assert all(not e for e in net.entries().values())
    assert net.service.reservations().by_intent == {}
