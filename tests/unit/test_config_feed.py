"""ConfigFeed: the latest running as JSON text for watchers, written when a watcher reads it."""

from __future__ import annotations

import asyncio
import json

from agents.config_feed import ConfigFeed


def test_a_late_watcher_gets_the_latest_document_as_sorted_json_text() -> None:
    feed = ConfigFeed()
    feed.publish({"b": {"x": 1}, "a": "first"})
    assert feed.publish({"b": {"y": [1, 2]}, "a": "second"}) == 1

    async def first() -> tuple[int, str]:
        async for revision, text in feed.watch():
            return revision, text
        raise AssertionError("the feed ended before its first revision")

    revision, text = asyncio.run(first())
    assert revision == 1
    assert json.loads(text) == {"a": "second", "b": {"y": [1, 2]}}
    assert text.index('"a"') < text.index('"b"')  # keys sorted, as watchers compare texts


def test_a_closed_feed_still_hands_its_last_revision_then_ends() -> None:
    feed = ConfigFeed()
    feed.publish({"n": 1})
    feed.close()

    async def everything() -> list[tuple[int, str]]:
        return [item async for item in feed.watch()]

    assert [(r, json.loads(t)) for r, t in asyncio.run(everything())] == [(0, {"n": 1})]
