"""Test support for SKIP: SKIP servers beside a `KmHarness`'s ETSI 014, over the same stores.

KM n1 serves SKIP (and ETSI 014, from the KmHarness) over one KeySupply; KM n2 serves SKIP
and ETSI 014 over its own store, which the harness's relay double fills for SAE d.
"""

from __future__ import annotations

from typing import Any

import httpx

from common.config import Address
from km.access import AccessControl, AccessPolicy
from km.etsi014.app import create_app as create_etsi014_app
from km.etsi014.server import MutualTlsServer, TlsFiles, client_tls_context
from km.etsi014.service import Etsi014Service
from km.skip.app import create_app
from km.skip.core import SkipLimits, SkipService
from tests.harness.etsi014 import NODES, SAE_NODES, KmHarness


class SkipHarness:
    def __init__(self, km: KmHarness, limits: SkipLimits | None = None) -> None:
        self.km = km
        pki = km.pki
        self.services = {
            "n1": SkipService(km.supply, km.access, limits),
            "n2": SkipService(
                km.peer_supplies["n2"], AccessControl(AccessPolicy.allow_all(SAE_NODES)), limits
            ),
        }
        self.servers: dict[str, MutualTlsServer] = {}
        for node, service in self.services.items():
            paths = pki.kms[node]
            self.servers[node] = MutualTlsServer(
                create_app(service),
                TlsFiles(paths.cert, paths.key, pki.ca.cert),
                Address("127.0.0.1", 0),
            )
        n2 = pki.kms["n2"]
        self.etsi014_n2 = MutualTlsServer(
            create_etsi014_app(
                Etsi014Service(
                    km.peer_supplies["n2"],
                    AccessControl(AccessPolicy.allow_all(SAE_NODES)),
                    {n: f"kme-{n}" for n in NODES},
                )
            ),
            TlsFiles(n2.cert, n2.key, pki.ca.cert),
            Address("127.0.0.1", 0),
        )
        for server in (*self.servers.values(), self.etsi014_n2):
            km.loop.run(server.start())

    def client(self, sae: str, node: str | None = None, **kwargs: Any) -> httpx.Client:
        """A SKIP client of `sae` toward its own KM (or `node`'s)."""
        return self._client(sae, self.servers[node or SAE_NODES[sae]].url, **kwargs)

    def etsi014(self, sae: str) -> httpx.Client:
        """An ETSI 014 client of `sae` toward its own KM (n1 or n2)."""
        url = self.km.url if SAE_NODES[sae] == "n1" else self.etsi014_n2.url
        return self._client(sae, url + "/api/v1/keys")

    def _client(self, sae: str, base_url: str, **kwargs: Any) -> httpx.Client:
        paths = self.km.pki.saes[sae]
        return httpx.Client(
            base_url=base_url,
            verify=client_tls_context(TlsFiles(paths.cert, paths.key, self.km.pki.ca.cert)),
            timeout=20.0,
            **kwargs,
        )

    def close(self) -> None:
        for server in (*self.servers.values(), self.etsi014_n2):
            self.km.loop.run(server.stop())
