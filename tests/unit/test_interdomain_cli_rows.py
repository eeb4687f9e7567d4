"""The rows of `qkdsdn controller interdomain ...` (pure): what each table shows, and plain
lines that are padded into columns and never folded, however long a cell."""

from __future__ import annotations

import io
import sys

import pytest

from controller.interdomain.cli import peer_rows, plain, reservation_rows, show, view_tables


def test_plain_lines_keep_every_row_on_one_line_in_columns() -> None:
    reason = "segment could not be installed " * 10
    lines = plain((["id", "reason"], [["x", reason.strip()], ["a-much-longer-id", "-"]]))
    assert len(lines) == 3
    assert lines[1].index(reason[:10]) == lines[0].index("reason")
    assert lines[2] == "a-much-longer-id  -"
    assert plain((["id"], [])) == []


def test_a_reservation_row_names_its_segment_by_borders_or_saes() -> None:
    hold = {
        "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "origin": "A",
        "master_sae": "app-a",
        "slave_sae": "app-c",
        "ingress": "b_a",
        "egress": None,
        "rate_bps": 2500,
        "key_mode": "qkd-only",
        "state": "committed",
        "expires_at": 0.0,
        "reason": "",
    }
    _, [row] = reservation_rows([hold])
    assert row[2:8] == ["app-a → app-c", "b_a → app-c", "2.5 kbit/s", "qkd-only", "committed", "-"]


def test_a_view_lists_borders_own_saes_reach_and_rates() -> None:
    view = {
        "domain": "B",
        "borders": [{"node": "b_a1", "peer_domain": "A", "peer_node": "a_b1"}],
        "saes": ["app-b"],
        "reach": {"app-c": ["C"]},
        "border_rates": [{"from": "b_a1", "to": "app-b", "available_bps": 1_500_000}],
    }
    (_, borders), (_, reach), (_, rates) = view_tables(view)
    assert borders[1] == [["b_a1", "A", "a_b1"]]
    assert reach[1] == [["app-b", "B", "served here"], ["app-c", "C", ""]]
    assert rates[1] == [["b_a1", "app-b", "1.50 Mbit/s"]]


def test_a_peer_that_is_no_neighbour_says_so() -> None:
    peer = {"name": "C", "state": "stale", "view_age_s": 7.5, "borders": [], "saes": ["app-c"]}
    _, [row] = peer_rows([peer])
    assert row[:5] == ["C", "stale", "7.5 s", "(not a neighbour)", "app-c"]


def test_on_a_terminal_the_rows_are_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(out, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys, "stdout", out)
    show([("peer domains", (["peer", "state"], [["B", "up"]]))], "none")
    text = out.getvalue()
    assert "peer domains" in text and "┏━━━━━━┳━━━━━━━┓" in text and "│ B    │" in text
