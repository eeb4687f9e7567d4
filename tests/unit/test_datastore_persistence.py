"""Running persisted in place (not durable) or by fsync + rename (durable)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from agents.datastore import Datastore, DatastoreName, padded
from tests.harness.netconf import INITIAL_RUNNING, FakeBackend
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"


def _location(value: str) -> etree._Element:
    return etree.fromstring(
        f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><qkd_node xmlns="{NS}">'
        f"<qkdn_location_id>{value}</qkdn_location_id></qkd_node></config>"
    )


@pytest.mark.parametrize("durable", [True, False])
def test_a_shorter_running_replaces_a_longer_one_exactly(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "running.xml"
    store = Datastore(Schema.default(), FakeBackend(), path, INITIAL_RUNNING, durable=durable)
    store.edit(DatastoreName.RUNNING, _location("a-rather-long-location-name-" * 8))
    long_size = path.stat().st_size
    store.edit(DatastoreName.RUNNING, _location("short"))
    text = path.read_text()
    assert path.stat().st_size < long_size and text.endswith(">")  # truncated, no padding
    again = Datastore(Schema.default(), FakeBackend(), path, INITIAL_RUNNING, durable=durable)
    assert again.running_json() == store.running_json()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_write_cut_before_its_truncate_still_loads(tmp_path: Path) -> None:
    """What a process killed between the in-place write and the truncate leaves behind."""
    path = tmp_path / "running.xml"
    store = Datastore(Schema.default(), FakeBackend(), path, INITIAL_RUNNING, durable=False)
    store.edit(DatastoreName.RUNNING, _location("x" * 300))
    old_size = path.stat().st_size
    store.edit(DatastoreName.RUNNING, _location("y"))
    whole = path.read_bytes()
    path.write_bytes(padded(whole, old_size))  # the state just before ftruncate
    assert path.stat().st_size == old_size
    again = Datastore(Schema.default(), FakeBackend(), path, INITIAL_RUNNING, durable=False)
    assert again.running_json() == store.running_json()


def test_padding_never_shortens() -> None:
    assert padded(b"abc", 1) == b"abc"
    assert padded(b"abc", 6) == b"abc   "
