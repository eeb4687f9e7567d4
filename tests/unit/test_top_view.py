"""`qkdsdn top`'s frame, rendered from a live-state dict at a fixed width."""

from __future__ import annotations

from typing import Any

import httpx

from lab.top import Source, fetch
from lab.top_view import bits_text, frame_text, rate_text

URL = "http://127.0.0.1:9"


def state() -> dict[str, Any]:
    return {
        "time": 1_700_000_000.0,
        "control": "data-driven",
        "nodes": [
            {"name": "qnode1", "id": "n1", "available": True},
            {"name": "qnode2", "id": "n2", "available": False},
        ],
        "links": [
            {
                "id": "l12",
                "a": "qnode1",
                "b": "qnode2",
                "status": "OFF",
                "skr": 0,
                "qber": None,
                "pool_bits": None,
                "reserved": 0,
                "load": None,
                "steering": "",
            },
            {
                "id": "l13",
                "a": "qnode1",
                "b": "qnode3",
                "status": "ACTIVE",
                "skr": 12_500,
                "qber": 0.021,
                "pool_bits": 65_536,
                "reserved": 4000,
                "load": 0.32,
                "steering": "draining",
            },
        ],
        "intents": [
            {
                "id": "i1",
                "pair": "app1>app2",
                "state": "INSTALLED",
                "path": ["qnode1", "qnode3"],
                "bandwidth": 4000,
                "priority": 2,
                "rate_bps": 2560.0,
                "consumed_bits": 25_600,
                "buffer": 5,
                "failures": 1,
            }
        ],
        "feed": [
            {"seq": 1, "at": 1_700_000_000.0, "kind": "alarm", "text": "link down qnode1–qnode2"},
            {"seq": 2, "at": 1_700_000_001.0, "kind": "decision", "text": "intent installed x"},
        ],
    }


def test_the_frame_shows_links_associations_and_the_newest_alarm_first() -> None:
    text = frame_text(state(), URL, width=160)
    assert "control data-driven" in text and "22:13:20 UTC" in text
    link_line = next(line for line in text.splitlines() if "qnode1–qnode3" in line)
    for value in ("ACTIVE", "12.5 kbit/s", "2.1%", "65.5 kbit", "4 kbit/s", "32%", "draining"):
        assert value in link_line, (value, link_line)
    assert "OFF" in next(line for line in text.splitlines() if "qnode1–qnode2" in line)
    row = next(line for line in text.splitlines() if "app1>app2" in line)
    for value in ("INSTALLED", "qnode1 > qnode3", "2.56 kbit/s", "25.6 kbit", " 5 ", " 1 "):
        assert value in row, (value, row)
    assert text.index("intent installed x") < text.index("link down qnode1–qnode2")
    assert "down" in next(line for line in text.splitlines() if "qnode2 " in line)


def test_a_frame_at_a_fixed_width_does_not_depend_on_the_terminal() -> None:
    narrow = frame_text(state(), URL, width=100)
    assert max(len(line) for line in narrow.splitlines()) <= 100
    assert frame_text(state(), URL, width=100) == narrow


def test_without_a_state_the_frame_says_the_controller_is_unreachable() -> None:
    text = frame_text(None, URL, "controller unreachable (ConnectError), retrying")
    assert "controller unreachable" in text and "links" not in text


def test_malformed_fields_are_shown_as_unknown_not_a_crash() -> None:
    bad = {"links": [{"a": "x", "skr": "fast", "qber": [1]}], "intents": "nope", "feed": [3]}
    text = frame_text(bad, URL)
    assert "x–?" in text and "-" in text


def test_units() -> None:
    assert rate_text(850) == "850 bit/s" and rate_text(1_250_000) == "1.25 Mbit/s"
    assert bits_text(999) == "999 bit" and bits_text(None) == "-"


def test_fetch_reports_an_unreachable_controller_and_keeps_the_token_out_of_repr() -> None:
    source = Source("http://127.0.0.1:1", "secret-token-value")
    assert "secret-token-value" not in repr(source)
    with httpx.Client(timeout=1.0) as client:
        got, problem = fetch(client, source)
    assert got is None and problem.startswith("controller unreachable")


def test_fetch_names_a_refused_token_and_a_malformed_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != "Bearer good":
            return httpx.Response(401, json={"detail": "unknown token"})
        return httpx.Response(200, text="[1, 2]")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        _, refused = fetch(client, Source(URL, "bad"))
        _, malformed = fetch(client, Source(URL, "good"))
    assert refused.startswith("controller answered 401") and "unknown token" in refused
    assert malformed == "controller sent a malformed state (not a JSON object)"
