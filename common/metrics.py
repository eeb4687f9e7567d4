"""One process's Prometheus metrics: its own registry, bounded label values, and /metrics."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from common.config import Address

__all__ = ["OTHER", "CollectorRegistry", "LabelBound", "MetricsServer"]

OTHER = "other"  # the label value that stands for every value past a bound


class LabelBound:
    """At most `limit` distinct label-value tuples per metric: later ones become `other`.

    Keeps a metric's series count bounded whatever the callers send (SAE ids come from
    requests). The first `limit` tuples seen keep their own series for the process's life."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a label bound needs a positive limit, not {limit}")
        self.limit = limit
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, *values: str) -> tuple[str, ...]:
        key = tuple(values)
        if key in self._seen:
            return key
        with self._lock:
            if key in self._seen or len(self._seen) < self.limit:
                self._seen.add(key)
                return key
        return (OTHER,) * len(values)

    @property
    def used(self) -> int:
        return len(self._seen)


@dataclass
class MetricsServer:
    """`/metrics` of `registry` over HTTP on `address`, served by a daemon thread."""

    address: Address  # as bound (port 0 resolved)
    _server: WSGIServer
    _thread: threading.Thread

    @staticmethod
    def start(registry: CollectorRegistry, address: Address) -> MetricsServer:
        """Listens on `address`; OSError (e.g. the port is taken) names the address."""
        try:
            server, thread = start_http_server(address.port, address.host, registry)
        except OSError as error:
            raise OSError(
                f"metrics: cannot listen on {address}: {error.strerror or error}"
            ) from None
        return MetricsServer(Address(address.host, server.server_port), server, thread)

    @property
    def url(self) -> str:
        return f"{self.address.url('http')}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
