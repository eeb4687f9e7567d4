"""The latest running configuration of a node, for any number of asyncio watchers.

The node publishes after every change (the datastore's apply callback); each watcher gets the
current value at once and then every newer one. A slow watcher skips intermediate revisions
(only the latest configuration matters). Publishing is thread-safe. A revision is written
as JSON text once, when a watcher first reads it (off the publisher's path, and never when
nobody watches): the published document must not be changed after `publish`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson


class ConfigFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision = -1
        self._doc: dict[str, Any] = {}
        self._text: str | None = ""  # None: not written yet
        self._closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def revision(self) -> int:
        """-1 before the first publication."""
        with self._lock:
            return self._revision

    def publish(self, doc: dict[str, Any]) -> int:
        """Makes `doc` (RFC 7951 JSON, kept as it is: never change it after) the latest
        configuration; returns its revision."""
        with self._lock:
            self._revision += 1
            self._doc, self._text = doc, None
            revision = self._revision
        self._wake()
        return revision

    def close(self) -> None:
        """Ends every watch (after its latest revision)."""
        with self._lock:
            self._closed = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def _latest_text(self) -> str:
        """The latest document as JSON text, written once per revision (lock held)."""
        if self._text is None:
            self._text = orjson.dumps(self._doc, option=orjson.OPT_SORT_KEYS).decode()
        return self._text

    async def watch(self) -> AsyncIterator[tuple[int, str]]:
        """(revision, JSON text) now and after every change, until the feed is closed."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        seen = -1
        try:
            while True:
                waiter[1].clear()  # before reading: a publish after the read sets it again
                with self._lock:
                    revision, text, closed = self._revision, self._latest_text(), self._closed
                if revision > seen:
                    seen = revision
                    yield revision, text
                elif closed:
                    return
                else:
                    await waiter[1].wait()
        finally:
            with self._lock:
                self._waiters.discard(waiter)
