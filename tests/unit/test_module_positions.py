"""A module end with a position file never hands out an index twice, across restarts and crashes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.emulator.positions import PositionError, PositionFile
from agents.emulator.qkd_module import LinkEnd, QkdModule, Status

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
LINK = "5b8f6a3e-1111-5222-8333-444455556666"
A, B = "11111111-1111-5111-8111-111111111111", "22222222-2222-5222-8222-222222222222"
CHUNK_BITS = 256
RATE_BPS = 100 * CHUNK_BITS  # 100 keys per second


@dataclass(frozen=True)
class Rate:
    skr_bps: float
    qber: float
    aborted: bool


def model(eve: float) -> Rate:
    return Rate(RATE_BPS, 0.02, False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def module(directory: Path, clock: Clock, seed: bytes = SEED, block: int = 8) -> QkdModule:
    """A freshly started process's module (its key stream starts generating at `clock.now`)."""
    positions = PositionFile(directory / f"{LINK}.position", LINK, seed, block=block)
    m = QkdModule(
        LinkEnd(LINK, A, B, 1),
        seed,
        model,
        clock,
        start=clock.now,
        capacity_chunks=10_000,
        positions=positions,
    )
    end = m.end
    assert m.open_connect(end.local_uri, end.peer_uri, LINK, 0, "km").status in (
        Status.SUCCESSFUL,
        Status.PEER_NOT_CONNECTED,
    )
    return m


def take_all(m: QkdModule) -> list[int]:
    """Every index the module hands out now, by asking for the next one until none is left."""
    out: list[int] = []
    while True:
        result = m.get_key(LINK)
        if result.status is not Status.SUCCESSFUL:
            return out
        out.append(result.index)


def test_a_restarted_module_never_returns_an_index_it_returned_before(tmp_path: Path) -> None:
    clock = Clock()
    seen: set[int] = set()
    for _run in range(4):
        m = module(tmp_path, clock)
        clock.now += 0.55
        ahead = m.get_key(LINK, m.base + 40)  # one out of order, ahead of the others
        assert ahead.status is Status.SUCCESSFUL
        handed = [ahead.index, *take_all(m)]
        assert len(handed) >= 50 and not seen & set(handed)
        seen |= set(handed)


def test_key_after_a_restart_is_available_at_once_from_the_mark(tmp_path: Path) -> None:
    clock = Clock()
    first = module(tmp_path, clock)
    clock.now += 1.0  # 100 keys generated
    assert len(take_all(first)) == 100
    restarted = module(tmp_path, clock)
    assert restarted.base >= 100
    assert restarted.get_key(LINK).status is Status.INSUFFICIENT_KEY  # nothing generated yet
    assert restarted.ready_in() == pytest.approx(0.01)
    clock.now += 0.015
    result = restarted.get_key(LINK)
    assert result.status is Status.SUCCESSFUL and result.index == restarted.base
    below = restarted.get_key(LINK, restarted.base - 1)
    assert below.status is Status.INSUFFICIENT_KEY and below.message == "consumed"


def test_a_crash_loses_nothing_that_was_reserved(tmp_path: Path) -> None:
    """SIGKILL-like: the process dies after handing out keys without any orderly shutdown;
    only what the file held at its last reservation survives, and it covers every key."""
    clock = Clock()
    first = module(tmp_path, clock, block=8)
    clock.now += 0.3
    handed = take_all(first)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path, snapshot, ignore=shutil.ignore_patterns("snapshot"))
    del first  # no close, no flush: nothing runs at the end of a killed process
    restarted = module(snapshot, clock)
    assert restarted.base > max(handed)


def test_a_new_seed_restarts_the_positions(tmp_path: Path) -> None:
    clock = Clock()
    first = module(tmp_path, clock)
    clock.now += 0.2
    assert take_all(first)
    assert module(tmp_path, clock, seed=OTHER_SEED).base == 0
    assert "seed" in json.loads((tmp_path / f"{LINK}.position").read_text())


def test_one_write_covers_a_block_of_keys(tmp_path: Path) -> None:
    clock = Clock()
    m = module(tmp_path, clock, block=50)
    path = tmp_path / f"{LINK}.position"
    clock.now += 0.35
    writes = 0
    last = None
    for _ in range(30):
        assert m.get_key(LINK).status is Status.SUCCESSFUL
        text = path.read_text()
        writes += text != last
        last = text
    assert writes == 1


def test_an_unreadable_position_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / f"{LINK}.position"
    path.write_text("not json")
    with pytest.raises(PositionError, match=str(path)):
        PositionFile(path, LINK, SEED)


def test_a_position_that_cannot_be_recorded_hands_out_no_key(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "positions"
    m = module(directory, clock)
    shutil.rmtree(directory, ignore_errors=True)
    directory.write_text("")  # the position file would now be below a regular file
    clock.now += 0.2
    result = m.get_key(LINK)
    assert result.status is Status.NO_QKD_CONNECTION and result.key == b""
    assert "cannot record key position" in result.message
