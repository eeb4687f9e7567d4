"""The live view's pure parts: the frame it draws, the bounded log of alarms and decisions,
and the page itself (one file, nothing fetched from elsewhere, read-only)."""

from __future__ import annotations

import re
from dataclasses import replace

import networkx as nx
import pytest
from fastapi.testclient import TestClient

from controller.api import Controller
from controller.api_token import ApiToken
from controller.buffer_service import BufferDecision
from controller.consumption import Usage
from controller.intents.service import IntentEvent, IntentEventType
from controller.model import (
    Intent,
    IntentState,
    KeyRequest,
    LinkStatus,
    Path,
    QoS,
    Reservation,
    Reservations,
    TopologySnapshot,
)
from controller.rest import build_app
from controller.steering import SteeringSettings, assess
from controller.topology.events import TopologyEvent, TopologyEventType
from controller.topology.synthetic import snapshot_from_graph
from controller.web.feed import LiveFeed
from controller.web.routes import page_html
from controller.web.state import live_state


def triangle() -> tuple[TopologySnapshot, dict[str, str]]:
    graph = nx.Graph()
    for a, b in (("qnode1", "qnode2"), ("qnode2", "qnode3"), ("qnode1", "qnode3")):
        graph.add_edge(a, b, eskr=10_000)
    return snapshot_from_graph(graph)


def relayed(snap: TopologySnapshot, ids: dict[str, str]) -> Intent:
    hops = (
        snap.links_between(ids["qnode1"], ids["qnode2"])[0].qkdl_id,
        snap.links_between(ids["qnode2"], ids["qnode3"])[0].qkdl_id,
    )
    request = KeyRequest(ids["qnode1"], ids["qnode3"], "app1", ("app2",), QoS(100, 2_500, 4))
    path = Path((ids["qnode1"], ids["qnode2"], ids["qnode3"]), hops)
    return Intent("i-1", request, IntentState.INSTALLED, path, 2_500)


def test_a_frame_names_nodes_links_and_each_association_with_its_path() -> None:
    snap, ids = triangle()
    intent = relayed(snap, ids)
    assert intent.path is not None
    reservations = Reservations({"i-1": Reservation("i-1", intent.path.links, 2_500, 4)})
    withdrawn = replace(intent, intent_id="i-0", state=IntentState.WITHDRAWN)
    frame = live_state(snap, reservations, [intent, withdrawn], [], 1234.5)
    assert frame["time"] == 1234.5 and frame["control"] == "static"
    assert [n["name"] for n in frame["nodes"]] == ["qnode1", "qnode2", "qnode3"]
    assert [(x["a"], x["b"]) for x in frame["links"]] == [
        ("qnode1", "qnode2"),
        ("qnode1", "qnode3"),
        ("qnode2", "qnode3"),
    ]
    first = frame["links"][0]
    assert first["reserved"] == 2_500 and first["load"] == 0.25 and first["status"] == "ACTIVE"
    [shown] = frame["intents"]  # withdrawn ones are history, not shown
    assert shown["pair"] == "app1>app2" and shown["priority"] == 4
    assert shown["path"] == ["qnode1", "qnode2", "qnode3"]
    assert shown["links"] == list(intent.path.links)


def test_a_frame_under_data_driven_control_marks_a_degraded_link() -> None:
    snap, ids = triangle()
    lid = snap.links_between(ids["qnode1"], ids["qnode3"])[0].qkdl_id
    settings = SteeringSettings()
    health = assess({}, snap, Reservations(), 0.0, settings)
    links = dict(snap.links)
    links[lid] = replace(links[lid], skr=1_000, eskr=1_000)
    dropped = TopologySnapshot(snap.devices, links)
    health = assess(health, dropped, Reservations(), 1.0, settings)
    frame = live_state(dropped, Reservations(), [], [], 0.0, health)
    assert frame["control"] == "data-driven"
    marks = {(x["a"], x["b"]): x["steering"] for x in frame["links"]}
    assert marks[("qnode1", "qnode3")] == "degraded"
    assert marks[("qnode1", "qnode2")] == "healthy"


def test_the_feed_keeps_the_latest_alarms_and_decisions_in_order() -> None:
    snap, ids = triangle()
    ticks = iter(range(100))
    feed = LiveFeed(lambda: snap, size=3, clock=lambda: float(next(ticks)))
    link = next(iter(snap.links.values()))
    feed.on_topology(
        TopologyEvent(
            TopologyEventType.LINK_DOWN,
            link.qkdl_id,
            link=replace(link, status=LinkStatus.OFF),
            reason="fibre cut",
        )
    )
    feed.on_topology(TopologyEvent(TopologyEventType.LINK_UPDATED, link.qkdl_id, link=link))
    assert [e.text for e in feed.entries()] == ["link down qnode1–qnode2: fibre cut"]
    intent = relayed(snap, ids)
    feed.on_intent(IntentEvent(IntentEventType.INSTALLED, intent))
    feed.on_intent(
        IntentEvent(IntentEventType.REROUTED, replace(intent, reason="re-routed: link down"))
    )
    feed.add("steering", "steering app3>app4: moved")
    entries = feed.entries()
    assert [e.seq for e in entries] == [2, 3, 4] and feed.seq == 4
    assert entries[0].text == "intent installed app1>app2 path qnode1 > qnode2 > qnode3"
    assert entries[1].text.endswith("(re-routed: link down)")
    assert [e.kind for e in entries] == ["decision", "decision", "steering"]
    with pytest.raises(ValueError, match="feed size"):
        LiveFeed(lambda: snap, size=0)


def test_the_page_is_one_file_that_loads_nothing_from_elsewhere_and_only_reads() -> None:
    html = page_html()
    assert "<svg" in html and "EventSource" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"\bimport\s*\(|<script[^>]+src=", html)
    assert not re.search(r"method:\s*[\"'](POST|PUT|DELETE|PATCH)", html)


def test_the_api_serves_the_page_and_a_frame_and_404s_unknown_live_paths() -> None:
    controller = Controller([])
    token = "secret-token-0123456789"
    client = TestClient(build_app(controller, ApiToken(token.encode())))
    assert client.get("/live").status_code == 401  # the view needs a credential too
    assert client.get("/live", params={"token": "wrong-token-0123456789"}).status_code == 401
    assert client.get("/status", params={"token": token}).status_code == 401  # only the view
    page = client.get("/live", params={"token": token})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "qkd-sdn live view" in page.text
    frame = client.get("/live/state", headers={"Authorization": f"Bearer {token}"})
    assert frame.status_code == 200 and frame.json()["nodes"] == []
    assert client.get("/live/nothing-here", params={"token": token}).status_code == 404
    assert client.post("/live/state", params={"token": token}).status_code == 405  # read-only


def test_a_frame_gives_each_association_its_consumption_buffer_and_failures() -> None:
    snap, ids = triangle()
    intent = relayed(snap, ids)
    usage = {"i-1": Usage(5120, 10.0, 512.04)}
    frame = live_state(snap, Reservations(), [intent], [], 0.0, None, usage, {"i-1": 9}, {})
    [shown] = frame["intents"]
    assert (shown["consumed_bits"], shown["rate_bps"], shown["buffer"], shown["failures"]) == (
        5120,
        512.0,
        9,
        0,
    )
    bare = live_state(snap, Reservations(), [intent], [], 0.0)["intents"][0]
    assert (bare["consumed_bits"], bare["rate_bps"], bare["buffer"]) == (None, None, None)


def test_the_feed_counts_each_associations_failures_and_shows_buffer_changes() -> None:
    snap, ids = triangle()
    feed = LiveFeed(lambda: snap)
    intent = relayed(snap, ids)
    feed.on_intent(IntentEvent(IntentEventType.INSTALLED, intent))
    for _ in range(2):
        feed.on_intent(
            IntentEvent(
                IntentEventType.FAILED, replace(intent, state=IntentState.FAILED, reason="x")
            )
        )
    assert feed.failures == {"i-1": 2}
    feed.on_buffer(BufferDecision(0.0, "i-1", "app1>app2", 3, 8, "measured 2048 bit/s", True))
    assert feed.entries()[-1].kind == "buffer"
    assert feed.entries()[-1].text == "buffer app1>app2: 3 → 8 keys, measured 2048 bit/s"
