"""The emulated hardware of the nodes one process hosts, sharing a clock and a key-stream start.

When both ends of a link live in one site, a fault on the fibre reaches both at the same
instant, so both key streams stay index-for-index identical.
"""

from __future__ import annotations

import time
from typing import Protocol

from agents.emulator.qkd_module import Clock, QkdModule


class SiteNode(Protocol):
    """What a site needs of a node's hardware: its id and its modules by link."""

    @property
    def qkdn_id(self) -> str: ...

    def module(self, qkdl_id: str) -> QkdModule | None: ...


class Site:
    """The nodes hosted by one process, sharing a clock and a key-stream start time."""

    def __init__(self, clock: Clock = time.monotonic, start: float | None = None) -> None:
        self.clock = clock
        self.start = clock() if start is None else start
        self._nodes: dict[str, SiteNode] = {}

    def add(self, node: SiteNode) -> None:
        self._nodes[node.qkdn_id] = node

    def node(self, qkdn_id: str) -> SiteNode | None:
        return self._nodes.get(qkdn_id)

    def peer_module(self, qkdl_id: str, peer_qkdn_id: str) -> QkdModule | None:
        peer = self._nodes.get(peer_qkdn_id)
        return None if peer is None else peer.module(qkdl_id)
