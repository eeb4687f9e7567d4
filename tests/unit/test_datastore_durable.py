"""Durable persistence of running: fsync of the file before the rename, of the directory after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lxml import etree

from agents.datastore import Datastore, DatastoreName
from agents.datastore.tree import BASE_NS
from tests.harness.netconf import INITIAL_RUNNING, NS, FakeBackend
from yang.schema import Schema


def _edit(location: str) -> etree._Element:
    return etree.fromstring(
        f'<config xmlns="{BASE_NS}"><qkd_node xmlns="{NS}">'
        f"<qkdn_location_id>{location}</qkdn_location_id></qkd_node></config>"
    )


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch, persisted: Path) -> list[tuple[str, str]]:
    """(what was fsynced, the persisted file's text at that moment), in order."""
    calls: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        target = os.readlink(f"/proc/self/fd/{descriptor}")
        text = persisted.read_text(encoding="utf-8") if persisted.exists() else ""
        calls.append((target, text))
        real_fsync(descriptor)

    monkeypatch.setattr("agents.datastore.persist.os.fsync", fsync)
    return calls


def test_a_durable_commit_syncs_the_new_file_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persisted = tmp_path / "state" / "running.xml"
    store = Datastore(Schema.default(), FakeBackend(), persisted, INITIAL_RUNNING)
    calls = _record_fsyncs(monkeypatch, persisted)
    store.edit(DatastoreName.CANDIDATE, _edit("durable"))
    store.commit()
    (file_sync, directory_sync) = calls
    # The temporary file is synced before it replaces running.xml ...
    assert Path(file_sync[0]).name.startswith(".running.xml.")
    assert "durable" not in file_sync[1]
    # ... and the directory after, when running.xml already holds the new configuration.
    assert directory_sync[0] == str(persisted.parent)
    assert "durable" in directory_sync[1]
    assert [p.name for p in persisted.parent.iterdir()] == ["running.xml"]


def test_without_durable_nothing_is_synced_but_the_file_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persisted = tmp_path / "running.xml"
    store = Datastore(Schema.default(), FakeBackend(), persisted, INITIAL_RUNNING, durable=False)
    calls = _record_fsyncs(monkeypatch, persisted)
    store.edit(DatastoreName.RUNNING, _edit("fast"))
    assert calls == []
    assert "fast" in persisted.read_text(encoding="utf-8")
    reopened = Datastore(Schema.default(), FakeBackend(), persisted, INITIAL_RUNNING)
    assert "fast" in etree.tostring(reopened.config(DatastoreName.RUNNING)).decode()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persisted = tmp_path / "running.xml"
    store = Datastore(Schema.default(), FakeBackend(), persisted, INITIAL_RUNNING)
    before = persisted.read_text(encoding="utf-8")

    def broken_fsync(descriptor: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr("agents.datastore.persist.os.fsync", broken_fsync)
    with pytest.raises(OSError):
        store.edit(DatastoreName.RUNNING, _edit("lost"))
    assert persisted.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["running.xml"]
    assert "lost" not in etree.tostring(store.config(DatastoreName.RUNNING)).decode()
