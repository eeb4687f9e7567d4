"""kill -9 of the receiving border KM (a real `qkdsdn km run`) in the middle of a stream of
ETSI 020 hand-offs, then a restart: no key delivered twice, none lost once acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from km import config as km_config
from km.interdomain.component import Interdomain
from km.interdomain.journal import Journal, VoidState
from km.key_store import KeyClaimError, KeyStore, StoredKey
from km.relay.errors import RelayFailure
from lab.launcher import free_ports
from tests.harness.etsi014 import read_ready_line
from tests.harness.interdomain import (
    Border,
    DomainPki,
    border_config,
    border_data,
    two_border_data,
)
from tests.harness.relay import wait_until

ROOT = Path(__file__).resolve().parents[2]
KM_RUN = (sys.executable, "-m", "lab.cli", "km", "run")
HAND_OFFS = 30
KILL_AFTER = 8  # acknowledged hand-offs before the kill


class Receiver:
    """A border KM (b_a) as its own `qkdsdn km run` process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*KM_RUN, "--config", str(self.config), "--log-level", "DEBUG"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        line = read_ready_line(self.proc, 60.0)
        assert line is not None and "etsi020=https://" in line, self.log.read_text()[-2000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def test_kill_9_of_the_receiving_border_km_loses_no_acknowledged_key_and_doubles_none(
    tmp_path: Path,
) -> None:
    pki = DomainPki(tmp_path / "pki")
    a_data, b_data = two_border_data(tmp_path, pki)
    b_file = tmp_path / "km-b_a.yaml"
    b_file.write_text(yaml.safe_dump(b_data))
    a_config = km_config.parse(a_data, tmp_path / "km-a_b.yaml")
    b_config = km_config.load(b_file)
    receiver = Receiver(b_file, tmp_path / "b_a.log")
    acked: list[StoredKey] = []
    failed: list[StoredKey] = []

    in_flight: list[StoredKey] = []  # the hand-off under way when the receiver was killed
    current: list[StoredKey] = []

    async def stream(sender: Interdomain, killed: asyncio.Event) -> None:
        for _ in range(HAND_OFFS):
            key = StoredKey(str(uuid.uuid4()), os.urandom(32), 256, "app-a", ("app-b",), None)
            current[:] = [key]
            try:
                await sender.hand_off([key], time.monotonic() + 3.0)
            except RelayFailure:
                failed.append(key)
            else:
                acked.append(key)
            if len(acked) == KILL_AFTER and not killed.is_set():
                killed.set()

    async def run() -> None:
        store = KeyStore(tmp_path / "a_b-keys.sqlite")
        sender = Interdomain(a_config, store)
        await sender.start()
        killed = asyncio.Event()
        try:
            task = asyncio.create_task(stream(sender, killed))
            await killed.wait()
            # the next hand-off is in flight now: kill -9 the receiver under it
            await asyncio.sleep(0)
            in_flight.extend(current)
            receiver.kill9()
            await asyncio.to_thread(receiver.start)
            await task
            # every failed hand-off owed a void: all of them reach the restarted receiver
            await wait_until(
                lambda: "outgoing.voiding" not in sender.journal.counts(),
                timeout=30,
                what="the owed voids",
            )
        finally:
            await sender.stop()
            store.close()

    receiver.start()
    try:
        asyncio.run(run())
    finally:
        receiver.terminate()
    assert len(acked) >= KILL_AFTER and len(acked) + len(failed) == HAND_OFFS
    # the kill hit a hand-off under way: retried into the restarted receiver (acked) or, if
    # the restart took longer than its deadline, failed and voided — either way checked below
    assert len(in_flight) == 1 and in_flight[0] not in acked[:KILL_AFTER]
    keys = KeyStore(b_config.key_store_file)
    try:
        # exactly the acknowledged keys wait at b_a: each once, with its value
        assert len(keys) == len(acked)
        for key in acked:
            (got,) = keys.claim("app-b", "app-a", [key.key_id])
            assert got.material == key.material
            try:
                keys.claim("app-b", "app-a", [key.key_id])
            except KeyClaimError:
                pass
            else:
                raise AssertionError(f"key {key.key_id} delivered twice")
        assert keys.lookup([k.key_id for k in failed]) == {}
    finally:
        keys.close()


def test_kill_9_of_a_border_km_in_the_middle_of_a_void_and_a_restart_finishes_the_void(
    tmp_path: Path,
) -> None:
    """a_b (A) → b_a (B, a real `qkdsdn km run`) → c_b (C). A void from a_b reaches b_a
    while c_b is down: b_a journals it owed and answers 503. b_a is killed (-9) and
    restarted; once c_b is back, the restarted b_a finishes the void there."""
    pki = DomainPki(tmp_path / "pki")
    port_a, port_b, port_c = free_ports(3)

    def url(port: int) -> str:
        return f"https://127.0.0.1:{port}/kmapi/v1"

    a = Border(
        "a_b",
        "A",
        port_a,
        {"app-a": "a_b", "app-c": "a_b"},
        [{"domain": "B", "kme_id": "b_a", "url": url(port_b), "saes": ["app-c"]}],
        ["B"],
    )
    b = Border(
        "b_a",
        "B",
        port_b,
        {"app-a": "b_a", "app-c": "b_a"},
        [
            {"domain": "A", "kme_id": "a_b", "url": url(port_a), "saes": ["app-a"]},
            {"domain": "C", "kme_id": "c_b", "url": url(port_c), "saes": ["app-c"]},
        ],
        ["A", "C"],
    )
    c = Border(
        "c_b",
        "C",
        port_c,
        {"app-a": "c_b", "app-c": "c_b"},
        [{"domain": "B", "kme_id": "b_a", "url": url(port_b), "saes": ["app-a"]}],
        ["B"],
    )
    b_file = tmp_path / "km-b_a.yaml"
    b_file.write_text(yaml.safe_dump(border_data(tmp_path, pki, b)))
    a_config, c_config = border_config(tmp_path, pki, a), border_config(tmp_path, pki, c)
    receiver = Receiver(b_file, tmp_path / "b_a.log")
    keys = [
        StoredKey(str(uuid.uuid4()), os.urandom(32), 256, "app-a", ("app-c",), None)
        for _ in range(2)
    ]
    ids = [k.key_id for k in keys]

    async def run() -> None:
        a_store, c_store = KeyStore(tmp_path / "a_b.sqlite"), KeyStore(tmp_path / "c_b.sqlite")
        sender, far = Interdomain(a_config, a_store), Interdomain(c_config, c_store)
        await sender.start()
        await far.start()
        try:
            await sender.hand_off(keys, time.monotonic() + 10)
            assert len(c_store) == 2  # acknowledged: C holds them
            await far.stop()  # C's border is down: the void cannot reach it
            with pytest.raises(RelayFailure, match="void a_b→b_a: no answer"):
                await sender.void_handed(ids, time.monotonic() + 3)
            receiver.kill9()  # b_a dies with the void owed in its journal
            await asyncio.to_thread(receiver.start)
            far = Interdomain(c_config, c_store)
            await far.start()
            await wait_until(lambda: len(c_store) == 0, timeout=30, what="the void finished at C")
            await wait_until(
                lambda: sender.journal.counts() == {"outgoing.voided": 2},
                timeout=30,
                what="a_b's owed void answered",
            )
        finally:
            await sender.stop()
            await far.stop()
            a_store.close()
            c_store.close()

    receiver.start()
    try:
        asyncio.run(run())
    finally:
        receiver.terminate()
    journal = Journal(tmp_path / "data-b_a" / "interdomain.sqlite")
    try:
        rows = journal.incoming(ids)
        assert {r.void for r in rows.values()} == {VoidState.VOIDED}
        assert journal.voids_in_progress() == []
    finally:
        journal.close()
    c_keys = KeyStore(tmp_path / "c_b.sqlite")
    try:
        with pytest.raises(KeyClaimError):  # never delivered after its void
            c_keys.claim("app-c", "app-a", ids[:1])
    finally:
        c_keys.close()
