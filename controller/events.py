"""One generic listener type for every subsystem (ONOS style): stores post typed events,
services subscribe with an `EventListener[E]`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

E = TypeVar("E")

EventListener = Callable[[E], None]

log = logging.getLogger(__name__)


class ListenerRegistry(Generic[E]):
    """Listeners of one event type; a failing listener is logged and does not stop the others."""

    def __init__(self) -> None:
        self._listeners: list[EventListener[E]] = []

    def add(self, listener: EventListener[E]) -> None:
        self._listeners.append(listener)

    def remove(self, listener: EventListener[E]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def post(self, event: E) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %r", listener, event)
