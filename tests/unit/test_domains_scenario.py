"""The `domains` scenario's pure parts: which trace events a request shows, the hop count of
both twins, and the chart from a result."""

from __future__ import annotations

from pathlib import Path

from lab.scenarios.domains import (
    DomainsResult,
    KeyRequest,
    TwinRun,
    domains_chart,
    journey,
    qkd_hops,
)
from lab.timeline import TimelineEvent
from lab.topology import load_topology, single_domain, topology_path


def test_both_twins_of_the_scenario_have_the_same_qkd_hops() -> None:
    topology = load_topology(topology_path("three-domains"))
    assert qkd_hops(topology, "app-a", "app-c") == 4
    assert qkd_hops(single_domain(topology), "app-a", "app-c") == 4


def test_a_request_shows_its_own_hand_offs_and_the_installs_in_its_window() -> None:
    events = [
        TimelineEvent(990.0, "km:a_b", "etsi020.handoff", {"key_ids": ["k1"], "peer": "b_a"}),
        TimelineEvent(1005.0, "km:a_b", "etsi020.handoff", {"key_ids": ["k2"], "peer": "b_a"}),
        TimelineEvent(1010.0, "controller-B", "intent.installed", {"intent": "x"}),
        TimelineEvent(1020.0, "km:b_a", "etsi020.received", {"key_id": "k1"}),
        TimelineEvent(1030.0, "agents", "notification.sent", {}),
        TimelineEvent(5000.0, "controller-C", "intent.installed", {}),
    ]
    picked = journey(events, "k1", 1000.0, 1100.0)
    assert [(e["source"], e["event"], e["t_ms"]) for e in picked] == [
        ("km:a_b", "etsi020.handoff", -10.0),  # relayed ahead, before the call
        ("controller-B", "intent.installed", 10.0),
        ("km:b_a", "etsi020.received", 20.0),
    ]
    assert all("key_ids" not in e and "key_id" not in e for e in picked)


def _run(label: str, enc: list[float]) -> TwinRun:
    requests = [
        KeyRequest(
            i,
            f"k{i}",
            "ab",
            True,
            ms,
            1.0,
            [{"t_ms": 1.0, "source": "controller-A", "event": "intent.installed"}],
        )
        for i, ms in enumerate(enc)
    ]
    return TwinRun(label, "t", 4, requests, enc[0], sorted(enc[1:])[1], 50.0, True, 0, {})


def test_the_chart_is_drawn_from_a_result(tmp_path: Path) -> None:
    result = DomainsResult(
        "domains",
        "app-a>app-c",
        _run("three domains", [300.0, 5.0, 6.0, 7.0]),
        _run("one domain", [200.0, 4.0, 5.0, 6.0]),
        1.2,
        2.0,
        True,
        True,
        str(tmp_path),
    )
    chart = tmp_path / "timeline.png"
    domains_chart(result, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_relay_time_runs_from_the_masters_first_link_key_to_its_relay_done() -> None:
    from lab.scenarios.domains import relay_ms

    events = [
        {"t_ms": -120.0, "source": "km:a1", "event": "relay.link_key"},
        {"t_ms": -110.0, "source": "km:a_b", "event": "relay.handed_off"},
        {"t_ms": -100.0, "source": "km:a1", "event": "relay.link_key"},
        {"t_ms": -20.5, "source": "km:a1", "event": "relay.done"},
        {"t_ms": -10.0, "source": "km:c2", "event": "relay.done"},
    ]
    request = KeyRequest(1, "k", "ab", True, 5.0, 1.0, events)
    assert relay_ms(request, "km:a1") == 99.5
    assert relay_ms(request, "km:b1") is None
