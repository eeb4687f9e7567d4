"""Adaptive relay buffers (pure): sized from the measured consumption, within bounds, with
hysteresis, and the one-leaf NETCONF edit that carries a new size."""

from __future__ import annotations

import pytest
from lxml import etree

from controller.buffers import BufferSettings, Direction, decide, plan_resizes, target_buffer
from controller.errors import CompileError
from controller.intents.compile import EditKind, compile_buffer
from controller.model import Intent, IntentState, KeyRequest, Path

SETTINGS = BufferSettings(minimum=1, maximum=64, horizon_s=1.0, key_bits=256, hold_s=10.0)


def intent(name: str, state: IntentState = IntentState.INSTALLED) -> Intent:
    request = KeyRequest("n1", "n3", name, (f"{name}-peer",))
    path = Path(("n1", "n3"), ("l13",)) if state is IntentState.INSTALLED else None
    return Intent(name, request, state, path, 1000)


def test_the_target_is_one_second_of_demand_in_keys_within_the_bounds() -> None:
    assert target_buffer(0.0, SETTINGS) == 1  # idle: the lower bound
    assert target_buffer(256.0, SETTINGS) == 1
    assert target_buffer(257.0, SETTINGS) == 2  # a part key is a key
    assert target_buffer(2560.0, SETTINGS) == 10
    assert target_buffer(1e9, SETTINGS) == 64  # the upper bound
    assert target_buffer(2560.0, BufferSettings(horizon_s=2.0)) == 20


def test_a_buffer_grows_at_once_when_demand_outgrows_it_by_a_quarter() -> None:
    assert decide(3, 2560.0, changed_at=99.0, now=100.0, settings=SETTINGS) == 10  # held: grows
    assert decide(8, 9 * 256.0, None, 100.0, SETTINGS) is None  # 9 < 8 x 1.25: kept
    assert decide(8, 10 * 256.0, None, 100.0, SETTINGS) == 10
    assert decide(1, 300.0, None, 0.0, SETTINGS) == 2


def test_a_buffer_shrinks_only_to_half_or_less_and_not_within_the_hold_time() -> None:
    assert decide(10, 6 * 256.0, None, 100.0, SETTINGS) is None  # 6 > 10 x 0.5: kept
    assert decide(10, 5 * 256.0, changed_at=95.0, now=100.0, settings=SETTINGS) is None  # held
    assert decide(10, 5 * 256.0, changed_at=89.0, now=100.0, settings=SETTINGS) == 5
    assert decide(10, 0.0, None, 100.0, SETTINGS) == 1


def test_a_demand_that_wobbles_around_a_size_does_not_flap() -> None:
    size, changes, now = 3, 0, 0.0
    for rate in [2560.0, 2300.0, 2800.0, 2000.0, 2600.0, 1900.0, 2700.0] * 5:
        now += 1.0
        new = decide(size, rate, None, now, SETTINGS)
        if new is not None:
            size, changes = new, changes + 1
    assert changes == 1 and size == 10


def test_a_buffer_outside_lowered_bounds_comes_back_within_them() -> None:
    assert decide(100, 1e9, None, 0.0, SETTINGS) == 64
    assert decide(0, 0.0, 0.0, 1.0, SETTINGS) == 1


def test_only_installed_measured_associations_are_resized_growths_first() -> None:
    intents = [intent("a"), intent("b"), intent("c"), intent("d", IntentState.FAILED)]
    rates = {"a": 0.0, "b": 5120.0, "d": 5120.0}  # c not measured yet
    resizes = plan_resizes(intents, {"a": 12}, rates, {}, 100.0, SETTINGS, default=3)
    assert [(r.intent_id, r.old, r.new, r.direction) for r in resizes] == [
        ("b", 3, 20, Direction.GROW),
        ("a", 12, 1, Direction.SHRINK),
    ]
    assert (
        resizes[0].reason
        == "measured 5120 bit/s: 1 s of demand is 20 keys of 256 bits (bounds 1..64)"
    )


def test_bad_buffer_settings_are_refused_naming_the_field() -> None:
    for changes, field in (
        ({"minimum": 5, "maximum": 2}, "minimum"),
        ({"horizon_s": 0.0}, "horizon_s"),
        ({"key_bits": 0}, "key_bits"),
        ({"grow_ratio": 0.9}, "grow_ratio"),
        ({"shrink_ratio": 1.0}, "shrink_ratio"),
        ({"hold_s": -1.0}, "hold_s"),
    ):
        with pytest.raises(ValueError, match=field):
            BufferSettings(**changes)  # type: ignore[arg-type]


def test_the_buffer_edit_merges_only_the_relay_buffer_leaf() -> None:
    edit = compile_buffer("intent-1", "n1", 12)
    assert edit.kind is EditKind.BUFFER and edit.device == "n1" and edit.data is None
    root = etree.fromstring(edit.config)
    [app] = root.iter("{urn:etsi:qkd:yang:etsi-qkd-node}qkd_app")
    assert [etree.QName(e).localname for e in app] == ["app_id", "relay"]
    assert "operation" not in etree.tostring(app).decode()  # a merge: the rest stays
    assert [e.text for e in app.iter() if etree.QName(e).localname == "buffer"] == ["12"]
    with pytest.raises(CompileError, match="uint32"):
        compile_buffer("intent-1", "n1", -1)
