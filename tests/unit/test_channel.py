"""Channel of one link end: status per link-status-types, events on change."""

from __future__ import annotations

import pytest

from agents.emulator.channel import Channel, LinkStatus
from agents.emulator.physics import link_rate


def status(channel: Channel) -> LinkStatus:
    return channel.state.status


def make() -> Channel:
    return Channel(lambda eve: link_rate("commercial", 50.0, eve_fraction=eve))


def test_starts_active_with_the_physical_rate() -> None:
    channel = make()
    assert status(channel) is LinkStatus.ACTIVE
    assert channel.state.skr_bps == pytest.approx(link_rate("commercial", 50.0).skr_bps)
    assert channel.state.reason == ""


def test_cut_and_restore_give_events_and_statuses() -> None:
    channel = make()
    cut = channel.set_fibre(False)
    assert cut is not None and cut.went_down and cut.status_changed
    assert status(channel) is LinkStatus.OFF and channel.state.skr_bps == 0
    assert "fibre cut" in channel.state.reason
    assert channel.set_fibre(False) is None  # nothing changed, no event
    restored = channel.set_fibre(True)
    assert restored is not None and restored.came_up


def test_disable_peer_and_node_states() -> None:
    channel = make()
    change = channel.set_enabled(False)
    assert change is not None and change.went_down
    assert status(channel) is LinkStatus.PASSIVE
    channel.set_enabled(True)
    channel.set_peer_up(False)
    assert status(channel) is LinkStatus.PENDING
    channel.set_node_up(False)
    assert status(channel) is LinkStatus.OFF and channel.state.reason == "node stopped"


def test_eavesdropper_raises_qber_then_aborts() -> None:
    channel = make()
    clean = channel.state
    light = channel.set_eavesdropper(0.05)
    assert light is not None and not light.went_down
    assert channel.state.qber > clean.qber and channel.state.skr_bps < clean.skr_bps
    assert light.skr_changed_by_more_than(0.10)
    heavy = channel.set_eavesdropper(0.6)
    assert heavy is not None and heavy.went_down
    assert status(channel) is LinkStatus.OFF and "aborted" in channel.state.reason
    assert channel.set_eavesdropper(0.0) is not None
    assert status(channel) is LinkStatus.ACTIVE


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_bad_fraction_is_refused_and_changes_nothing(fraction: float) -> None:
    channel = make()
    before = channel.state
    with pytest.raises(ValueError):
        channel.set_eavesdropper(fraction)
    assert channel.state == before
