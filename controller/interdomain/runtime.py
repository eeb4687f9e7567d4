"""Wiring of the `domain` section: this domain's service, the coordinator and its peer
clients, the background loops (expiry, peer views), and the tokens peers must send."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.audit import AuditLog
from controller.api import Controller
from controller.api_token import ApiToken, load_api_token
from controller.config import DomainConfig
from controller.interdomain.client import HttpPeer
from controller.interdomain.coordinator import Coordinator
from controller.interdomain.service import DomainService


def accepted_tokens(config: DomainConfig) -> dict[str, ApiToken]:
    """Peer domain -> the token it must send us (TokenError names a bad file)."""
    return {peer.name: load_api_token(peer.accept_token_file) for peer in config.peers}


@dataclass
class Interdomain:
    service: DomainService
    coordinator: Coordinator
    clients: Mapping[str, HttpPeer]
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @staticmethod
    def of(config: DomainConfig, controller: Controller, audit: AuditLog) -> Interdomain:
        """Built and hooked into `controller` (its application requests across domains)."""
        service = DomainService(config, controller.topology, controller.intent_service, audit)
        clients = {
            peer.name: HttpPeer(
                peer.name, peer.url, load_api_token(peer.token_file), config.peer_timeout_s
            )
            for peer in config.peers
        }
        coordinator = Coordinator(
            service, clients, controller.intent_service, controller.topology, config.peer_timeout_s
        )
        controller.foreign = coordinator
        return Interdomain(service, coordinator, clients)

    def start(self) -> None:
        interval = min(1.0, self.service.config.reservation_ttl_s / 4)
        self.tasks = [
            asyncio.create_task(self.service.expire_every(interval)),
            asyncio.create_task(self.coordinator.run_views()),
        ]

    async def stop(self) -> None:
        await self.coordinator.settle_pushes()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients.values()))
