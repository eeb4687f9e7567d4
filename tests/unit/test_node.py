"""QkdNode: initial config, veto, apply, operational state and notifications (no sockets)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from agents.datastore import Datastore
from agents.emulator.channel import LinkStatus
from agents.initial_config import QKD_NODE
from agents.node import NodeSettings, NodeStatus, QkdNode, Site, backend
from agents.notifications import AppRequest, names_of
from lab.plan import LabPlan
from tests.harness.agents import LinkSpec, make_test_plan
from tests.harness.configs import agent_config_of
from yang.schema import Schema

SCHEMA = Schema.default()
VIRT_ID = "0b6f2c1e-7c1a-4d59-9a43-3c9b1e5d7a10"
APP_ID = "6a7f0d7e-5a55-4e5a-9c39-0d4c0e9b1c22"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Bench:
    """Three nodes a - b - c in one site, notifications collected per node."""

    def __init__(self, tmp_path: Path) -> None:
        self.plan: LabPlan = make_test_plan(
            tmp_path,
            ["a", "b", "c"],
            [LinkSpec("a", "b", skr_bps=25_600.0, qber=0.02), LinkSpec("b", "c", length_km=40)],
        )
        self.clock = Clock()
        self.site = Site(self.clock)
        self.sent: dict[str, list[str]] = {"a": [], "b": [], "c": []}
        self.nodes = {
            name: QkdNode(agent_config_of(self.plan, name), self.site, self.publisher(name))
            for name in ("a", "b", "c")
        }
        for node in self.nodes.values():
            node.start(node.initial_running())

    def publisher(self, name: str) -> Callable[[str], None]:
        """Checks each notification against the YANG model, as NetconfServer.publish does."""

        def publish(xml: str) -> None:
            errors = SCHEMA.validate_notification_xml(xml)
            if errors:
                raise ValueError(f"invalid notification: {errors}")
            self.sent[name].append(xml)

        return publish

    def link(self, a: str, b: str) -> str:
        return next(x.qkdl_id for x in self.plan.links if {x.a, x.b} == {a, b})

    def id(self, name: str) -> str:
        return self.plan.node(name).qkdn_id

    def names(self, node: str) -> list[str]:
        events = names_of(self.sent[node])
        self.sent[node].clear()
        return events


def with_virt(bench: Bench, node: str, prev: str | None, nxt: list[str], bw: int) -> dict[str, Any]:
    doc = copy.deepcopy(bench.nodes[node].initial_running())
    virt: dict[str, Any] = {
        "qkdl_id": VIRT_ID,
        "qkdl_type": "etsi-qkd-node-types:VIRT",
        "virt_bandwidth": bw,
    }
    if prev:
        virt["virt_prev_hop"] = prev
    if nxt:
        virt["virt_next_hop"] = nxt
    doc[QKD_NODE]["qkd_links"]["qkd_link"].append(virt)
    doc[QKD_NODE]["qkd_applications"] = {
        "qkd_app": [
            {
                "app_id": APP_ID,
                "app_type": "etsi-qkd-node-types:INTERNAL",
                "server_app_id": "sae-1",
                "client_app_id": ["sae-2"],
                "backing_qkdl_id": [VIRT_ID],
            }
        ]
    }
    return doc


def test_initial_config_and_operational_state_are_schema_valid(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    schema = Schema.default()
    node = bench.nodes["b"]
    assert schema.validate_config_json(node.initial_running()) == []
    store = Datastore(schema, node, None, schema.json_to_xml(node.initial_running()))
    node.start(store.running_json())
    state = etree.tostring(store.operational(), encoding="unicode")
    assert schema.validate_data_xml(state) == []
    assert "etsi-qkdn-types:OPERATING" in state or "OPERATING" in state
    doc = with_virt(bench, "b", bench.id("a"), [bench.id("c")], 1000)
    assert schema.validate_config_json(doc) == []
    node.apply(doc)
    ops = node.operational(doc)[QKD_NODE]
    virt = next(x for x in ops["qkd_links"]["qkd_link"] if x["qkdl_id"] == VIRT_ID)
    assert virt["qkdl_status"].endswith(":ACTIVE")
    assert virt["qkdl_performance"]["expected_consumption"] == 1000
    app = ops["qkd_applications"]["qkd_app"][0]
    assert app["app_status"].endswith(":ON")
    assert schema.validate_data_xml(schema.json_to_xml(node.operational(doc))) == []


def test_veto_refuses_what_the_hardware_cannot_do(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    a = bench.nodes["a"]
    good = with_virt(bench, "a", None, [bench.id("b")], 1000)
    assert a.veto(good) is None
    not_neighbour = with_virt(bench, "a", None, [bench.id("c")], 1000)
    assert "not a neighbour" in (a.veto(not_neighbour) or "")
    itself = with_virt(bench, "a", bench.id("a"), [], 1000)
    assert "this node itself" in (a.veto(itself) or "")
    removed = copy.deepcopy(a.initial_running())
    removed[QKD_NODE]["qkd_links"]["qkd_link"] = []
    assert "cannot be removed" in (a.veto(removed) or "")
    foreign = copy.deepcopy(a.initial_running())
    link = copy.deepcopy(foreign[QKD_NODE]["qkd_links"]["qkd_link"][0])
    link["qkdl_id"] = VIRT_ID
    foreign[QKD_NODE]["qkd_links"]["qkd_link"].append(link)
    assert "no fibre" in (a.veto(foreign) or "")
    renamed = copy.deepcopy(a.initial_running())
    renamed[QKD_NODE]["qkdn_id"] = bench.id("b")
    assert "fixed" in (a.veto(renamed) or "")
    dangling = with_virt(bench, "a", None, [bench.id("b")], 1000)
    dangling[QKD_NODE]["qkd_applications"]["qkd_app"][0]["backing_qkdl_id"] = [APP_ID]
    assert "not configured" in (a.veto(dangling) or "")


def test_disable_by_configuration_stops_both_ends(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    ab = bench.link("a", "b")
    doc = copy.deepcopy(bench.nodes["a"].initial_running())
    doc[QKD_NODE]["qkd_links"]["qkd_link"][0]["qkdl_enable"] = False
    bench.nodes["a"].apply(doc)
    assert bench.nodes["a"].report(ab).status is LinkStatus.PASSIVE
    assert bench.nodes["b"].report(ab).status is LinkStatus.PENDING
    assert "sdqkdn_link_down" in bench.names("a")
    assert "sdqkdn_link_down" in bench.names("b")
    ops = bench.nodes["a"].operational(doc)[QKD_NODE]
    assert ops["qkd_interfaces"]["qkd_interface"][0]["qkdi_status"].endswith(":DISABLED")
    doc[QKD_NODE]["qkd_links"]["qkd_link"][0]["qkdl_enable"] = True
    bench.nodes["a"].apply(doc)
    assert bench.nodes["b"].report(ab).status is LinkStatus.ACTIVE


def test_cut_reaches_both_ends_and_keeps_streams_identical(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    ab = bench.link("a", "b")
    a, b = bench.nodes["a"].module(ab), bench.nodes["b"].module(ab)
    assert a is not None and b is not None
    bench.clock.now += 1.0
    bench.nodes["b"].set_link(ab, up=False)
    assert bench.names("a")[:2] == ["sdqkdn_link_down", "alarm"]
    assert "sdqkdn_link_down" in bench.names("b")
    bench.clock.now += 3.0
    bench.nodes["a"].set_link(ab, up=True)
    bench.clock.now += 0.5
    assert a.history == b.history
    assert a.stats().generated_keys == b.stats().generated_keys == 150
    report = bench.nodes["a"].report(ab)
    assert report.status is LinkStatus.ACTIVE and report.available_keys == 150


def test_eavesdropper_updates_performance_then_aborts(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    bc = bench.link("b", "c")
    bench.nodes["c"].set_eavesdropper(bc, 0.05)
    events = bench.names("b")
    assert "sdqkdn_link_perf_update" in events and "alarm" in events
    bench.nodes["c"].set_eavesdropper(bc, 0.6)
    assert "sdqkdn_link_down" in bench.names("b")
    assert bench.nodes["b"].report(bc).aborted
    with pytest.raises(ValueError):
        bench.nodes["c"].set_eavesdropper(bc, 2.0)
    with pytest.raises(KeyError):
        bench.nodes["a"].set_link(bc, up=False)


def test_overload_is_raised_once_when_plans_exceed_the_rate(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    a = bench.nodes["a"]
    doc = with_virt(bench, "a", None, [bench.id("b")], 30_000)
    a.apply(doc)
    assert bench.names("a").count("sdqkdn_link_overloaded") == 1
    assert a.expected_consumption(bench.link("a", "b")) == 30_000
    a.apply(doc)
    assert "sdqkdn_link_overloaded" not in bench.names("a")
    a.set_link(bench.link("a", "b"), up=False)
    assert "sdqkdn_link_overloaded" not in bench.names("a")
    a.set_link(bench.link("a", "b"), up=True)  # back, and still short of key
    assert bench.names("a").count("sdqkdn_link_overloaded") == 1


def test_registration_raises_application_new_once_per_window(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    schema = Schema.default()
    a = bench.nodes["a"]
    request = AppRequest("sae-1", ("sae-2",), bench.id("a"), bench.id("c"))
    assert a.register_application(request)[0]
    assert a.register_application(request) == (
        True,
        "already registered: waiting for the controller",
    )
    assert len(bench.sent["a"]) == 1
    assert schema.validate_notification_xml(bench.sent["a"][0]) == []
    assert "remote_qkdn_id" in bench.sent["a"][0]
    bench.clock.now += NodeSettings().renotify_after_s + 1
    assert a.register_application(request)[0] and len(bench.sent["a"]) == 2
    bad = AppRequest("sae-1", ("sae-2",), bench.id("a"), "not-a-uuid")
    assert a.register_application(bad)[0] is False


def test_stop_node_takes_its_links_down_at_the_peers(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    bench.nodes["b"].stop()
    assert bench.nodes["b"].status is NodeStatus.DOWN
    for peer in ("a", "c"):
        reports = bench.nodes[peer].reports()
        assert [r.status for r in reports] == [LinkStatus.PENDING]
        assert "sdqkdn_link_down" in bench.names(peer)


def test_config_feed_streams_now_and_after_each_change(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    node = bench.nodes["a"]

    async def scenario() -> list[int]:
        seen: list[int] = []

        async def watch() -> None:
            async for revision, text in node.feed.watch():
                assert node.qkdn_id in text
                seen.append(revision)

        task = asyncio.create_task(watch())
        while not seen:
            await asyncio.sleep(0)
        node.apply(with_virt(bench, "a", None, [bench.id("b")], 10))
        while len(seen) < 2:
            await asyncio.sleep(0)
        node.stop()
        await asyncio.wait_for(task, 5)
        return seen

    assert asyncio.run(scenario()) == [0, 1]


def test_periodic_perf_updates_are_published(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    sent: list[str] = []
    node = QkdNode(
        agent_config_of(plan, "a"), Site(), sent.append, NodeSettings(perf_interval_s=0.01)
    )
    node.start(node.initial_running())

    async def scenario() -> None:
        task = asyncio.create_task(node.run_perf_updates())
        deadline = asyncio.get_running_loop().time() + 10
        while len(sent) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        node.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    updates = [x for x in sent if "sdqkdn_link_perf_update" in x]
    assert len(updates) >= 2
    assert all(SCHEMA.validate_notification_xml(x) == [] for x in updates)
    assert plan.links[0].qkdl_id in updates[0] and "<skr>" in updates[0]


OPERATIONS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["cut", "restore", "eve", "enable", "disable"]),
        st.sampled_from([0.0, 0.03, 0.1, 0.6]),
    ),
    max_size=12,
)


def test_both_ends_stay_identical_under_random_faults(tmp_path: Path) -> None:
    """Faults and configuration at either end, at random times: same indices, same keys."""
    bench = Bench(tmp_path)
    ab = bench.link("a", "b")
    ends = {name: bench.nodes[name] for name in ("a", "b")}
    base = {name: copy.deepcopy(node.initial_running()) for name, node in ends.items()}

    @settings(max_examples=60, deadline=None)
    @given(operations=OPERATIONS)
    def check(operations: list[tuple[float, str, str, float]]) -> None:
        for delay, where, what, fraction in operations:
            bench.clock.now += delay
            node = ends[where]
            if what in ("cut", "restore"):
                node.set_link(ab, up=what == "restore")
            elif what == "eve":
                node.set_eavesdropper(ab, fraction)
            else:
                doc = copy.deepcopy(base[where])
                doc[QKD_NODE]["qkd_links"]["qkd_link"][0]["qkdl_enable"] = what == "enable"
                node.apply(doc)
            a, b = ends["a"].module(ab), ends["b"].module(ab)
            assert a is not None and b is not None
            assert a.history == b.history
            assert a.stats().generated_keys == b.stats().generated_keys
            assert a.stats().status.name in ("ACTIVE", "OFF", "PASSIVE", "PENDING")

    check()
    a, b = ends["a"].module(ab), ends["b"].module(ab)
    assert a is not None and b is not None
    for name in ("a", "b"):
        ends[name].set_link(ab, up=True)
        ends[name].set_eavesdropper(ab, 0.0)
        ends[name].apply(base[name])
    for module in (a, b):
        opened = module.open_connect(module.end.local_uri, module.end.peer_uri, ab, 0, "km")
        assert opened.status.value in (0, 1)
    bench.clock.now += 1.0
    key = a.get_key(ab)
    assert key.status.value == 0
    assert b.get_key(ab, key.index).key == key.key


def test_the_running_tree_is_parsed_once_per_revision_not_per_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = Bench(tmp_path)
    a = bench.nodes["a"]
    parses: list[int] = []
    real_parse = backend.parse

    def counting(running: dict[str, Any], earlier: Any = None) -> Any:
        parses.append(1)
        return real_parse(running, earlier)

    monkeypatch.setattr(backend, "parse", counting)
    doc = with_virt(bench, "a", None, [bench.id("b")], 1000)
    assert a.veto(doc) is None
    a.apply(doc)  # the datastore applies the document it had vetoed
    assert len(parses) == 1
    a.apply(copy.deepcopy(doc))  # another document: parsed (taking the unchanged parts)
    assert len(parses) == 2
    decoded_for_gets = copy.deepcopy(doc)  # and once more for the state reports
    for _ in range(5):
        state = a.operational(decoded_for_gets)[QKD_NODE]
    assert len(parses) == 2
    assert [x["qkdl_id"] for x in state["qkd_links"]["qkd_link"]][-1] == VIRT_ID
    other = with_virt(bench, "a", None, [bench.id("b")], 2000)
    assert a.expected_consumption(bench.link("a", "b"), other) == 2000  # not running: parsed
    assert len(parses) == 3


def test_a_configuration_the_model_refuses_is_vetoed_naming_the_leaf(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    doc = with_virt(bench, "a", None, [bench.id("b")], 1000)
    doc[QKD_NODE]["qkd_links"]["qkd_link"][-1]["virt_bandwidth"] = "fast"
    reason = bench.nodes["a"].veto(doc) or ""
    assert "virt_bandwidth" in reason and "expected an integer" in reason


def test_periodic_perf_updates_name_only_changed_links_with_a_slow_heartbeat(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("a", "c")])
    node = QkdNode(
        agent_config_of(plan, "a"),
        Site(),
        lambda _: None,
        NodeSettings(perf_heartbeat_periods=3),
    )
    node.start(node.initial_running())
    try:
        assert len(node.perf_updates()) == 2  # first report: every link
        assert node.perf_updates() == []  # nothing moved: nothing said
        assert node.perf_updates() == []
        assert len(node.perf_updates()) == 2  # the heartbeat, three periods after
        ab = plan.links[0].qkdl_id
        node.set_link(ab, False)  # its SKR drops to 0: reported at once by the change...
        updates = node.perf_updates()  # ... and not again unchanged in the next period
        assert all(ab not in update for update in updates)
    finally:
        node.stop()
