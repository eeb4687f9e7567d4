"""Test support for the key manager (imported by its contract tests and benchmarks).

A `KmHarness` runs one real KM front end (ETSI 014 over uvicorn with mutual TLS, optionally
ETSI 004 over gRPC) on 127.0.0.1 in a background event loop, with certificates made by
lab/pki.py. `TwoNodeRelay` is an in-memory RemoteSupplier: it stores keys in the other
node's KeyStore the way the relay does, so cross-node requests exercise KeySupply's seam.
"""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from common.config import Address
from km.access import AccessControl, AccessPolicy
from km.etsi014.app import create_app
from km.etsi014.server import MutualTlsServer, TlsFiles, client_tls_context
from km.etsi014.service import Etsi014Limits, Etsi014Service
from km.key_store import KeyStore, StoredKey
from km.supply import KeySupply, RemoteSupplier, SupplyError
from lab.pki import LabPki, create_lab_pki
from tests.harness.agents import make_test_plan

T = TypeVar("T")

# Applications of the test lab: a, b, c at node n1; d at node n2; e at node n3.
SAE_NODES: dict[str, str] = {"a": "n1", "b": "n1", "c": "n1", "d": "n2", "e": "n3"}
NODES = ("n1", "n2", "n3")


def make_pki(tmp_path: Path) -> LabPki:
    return create_lab_pki(tmp_path, NODES, [*SAE_NODES, "stranger"])


class TwoNodeRelay:
    """A RemoteSupplier test double: keys for other nodes land in their stores directly."""

    def __init__(self, stores: dict[str, KeyStore], source: KeySupply | None = None) -> None:
        self.stores = stores
        self.source: KeySupply | None = source
        self.calls: list[tuple[str, tuple[str, ...], str, int, int, bool]] = []

    async def enc_keys(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
        *,
        keys: Sequence[StoredKey] | None = None,
    ) -> list[StoredKey]:
        self.calls.append((master, tuple(slaves), slave_node, number, size_bits, keys is not None))
        if slave_node not in self.stores:
            raise SupplyError(503, f"no path to node {slave_node}")
        if keys is None:
            assert self.source is not None
            keys = self.source.mint.keys(master, slaves, number, size_bits)
        self.stores[slave_node].add(list(keys), ready_for_master=False)
        return list(keys)

    def ready_count(self, master: str, slave: str) -> int:
        return 0


class LoopThread:
    """An asyncio loop in a daemon thread, for servers used by synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class KmHarness:
    """ETSI 014 of KM n1 (and a key store for n2, n3 fed by TwoNodeRelay)."""

    def __init__(
        self,
        tmp_path: Path,
        pki: LabPki,
        *,
        policy: AccessPolicy | None = None,
        limits: Etsi014Limits | None = None,
        with_remote: bool = True,
    ) -> None:
        self.tmp_path = tmp_path
        self.pki = pki
        self.stores = {n: KeyStore(tmp_path / "km" / n / "keys.sqlite") for n in NODES}
        self.relay = TwoNodeRelay({n: s for n, s in self.stores.items() if n != "n1"})
        remote: RemoteSupplier | None = self.relay if with_remote else None
        self.supply = KeySupply("n1", SAE_NODES, self.stores["n1"], remote)
        self.relay.source = self.supply
        # dec_keys at the other nodes, for cross-node checks
        self.peer_supplies = {
            n: KeySupply(n, SAE_NODES, self.stores[n], None) for n in NODES if n != "n1"
        }
        self.access = AccessControl(policy or AccessPolicy.allow_all(SAE_NODES))
        self.service = Etsi014Service(
            self.supply,
            self.access,
            {n: f"kme-{n}" for n in NODES},
            limits or Etsi014Limits(),
        )
        km = pki.kms["n1"]
        self.server = MutualTlsServer(
            create_app(self.service),
            TlsFiles(km.cert, km.key, pki.ca.cert),
            Address("127.0.0.1", 0),
        )
        self.loop = LoopThread()
        self.loop.run(self.server.start())

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, sae: str, **kwargs: Any) -> httpx.Client:
        paths = self.pki.saes[sae]
        return httpx.Client(
            base_url=self.url + "/api/v1/keys",
            verify=client_tls_context(TlsFiles(paths.cert, paths.key, self.pki.ca.cert)),
            timeout=20.0,
            **kwargs,
        )

    def async_client(self, sae: str, **kwargs: Any) -> httpx.AsyncClient:
        paths = self.pki.saes[sae]
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1/keys",
            verify=client_tls_context(TlsFiles(paths.cert, paths.key, self.pki.ca.cert)),
            timeout=30.0,
            **kwargs,
        )

    def close(self) -> None:
        self.loop.run(self.server.stop())
        self.loop.close()
        for store in self.stores.values():
            store.close()


def replace_slaves(key: StoredKey, slaves: Sequence[str]) -> StoredKey:
    return replace(key, slaves=tuple(slaves))


def read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The `ready ...` line a `qkdsdn km run` (or any server of ours) prints once it listens;
    None when the process closes its output or the deadline passes first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                return None
            line = proc.stdout.readline().decode()
            if not line:
                return None
            if line.startswith("ready"):
                return line.strip()
    return None


def make_plan(tmp_path: Path, pki: LabPki) -> Path:
    """A lab plan with NODES and SAE_NODES (no links), saved as tmp_path/plan.json; the
    certificates are those of `pki`."""
    plan = make_test_plan(tmp_path, NODES, [], list(SAE_NODES.items()))
    plan = replace(
        plan,
        apps=tuple(
            replace(app, cert=str(pki.saes[app.sae_id].cert), key=str(pki.saes[app.sae_id].key))
            for app in plan.apps
        ),
        credentials=replace(plan.credentials, ca_cert=str(pki.ca.cert), ca_key=str(pki.ca.key)),
        controller=replace(
            plan.controller, cert=str(pki.controller.cert), key=str(pki.controller.key)
        ),
        node_certs={n: (str(p.cert), str(p.key)) for n, p in pki.kms.items()},
    )
    path = tmp_path / "plan.json"
    plan.save(path)
    return path
