"""What the live view draws, as JSON (pure): nodes, links with their numbers, intents, the log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.consumption import Usage
from controller.model import (
    Intent,
    IntentId,
    IntentState,
    LinkId,
    Reservations,
    TopologySnapshot,
)
from controller.steering import LinkHealth
from controller.web.feed import FeedEntry

SHOWN_STATES = (
    IntentState.INSTALLED,
    IntentState.INSTALLING,
    IntentState.FAILED,
    IntentState.REJECTED,
)


def live_state(
    snapshot: TopologySnapshot,
    reservations: Reservations,
    intents: Iterable[Intent],
    feed: Iterable[FeedEntry],
    now: float,
    health: Mapping[LinkId, LinkHealth] | None = None,
    usage: Mapping[IntentId, Usage] | None = None,
    buffers: Mapping[IntentId, int] | None = None,
    failures: Mapping[IntentId, int] | None = None,
) -> dict[str, Any]:
    """One frame of the live view; names, never key material. `health`: data-driven
    steering's view of the links (None: static control); `usage`: the measured consumption
    of the associations, `buffers` their relay buffers, `failures` how often each failed or
    was refused."""
    usage = usage or {}
    buffers = buffers or {}
    failures = failures or {}
    name = snapshot.name_of
    nodes = sorted(
        (
            {"name": d.name, "id": d.device_id, "available": d.available}
            for d in snapshot.devices.values()
        ),
        key=lambda n: str(n["name"]),
    )
    links = []
    for link in snapshot.links.values():
        a, b = sorted((name(link.a), name(link.b)))
        reserved = reservations.reserved_on(link.qkdl_id)
        links.append(
            {
                "id": link.qkdl_id,
                "a": a,
                "b": b,
                "status": link.status.value,
                "skr": link.skr,
                "eskr": link.eskr,
                "consumption": link.expected_consumption,
                "qber": link.qber,
                "pool_bits": link.pool_level_bits,
                "reserved": reserved,
                "load": round(reserved / link.skr, 3) if link.skr else None,
                "steering": _condition(health.get(link.qkdl_id) if health else None),
            }
        )
    links.sort(key=lambda x: (x["a"], x["b"], x["id"]))
    shown = []
    for intent in intents:
        if intent.state not in SHOWN_STATES:
            continue
        request = intent.request
        used = usage.get(intent.intent_id)
        shown.append(
            {
                "id": intent.intent_id,
                "pair": f"{request.server_app_id or name(request.src)}>"
                + (",".join(request.client_app_ids) or name(request.dst)),
                "src": name(request.src),
                "dst": name(request.dst),
                "state": intent.state.value,
                "path": [name(n) for n in intent.path.nodes] if intent.path else [],
                "links": list(intent.path.links) if intent.path else [],
                "bandwidth": intent.bandwidth,
                "priority": request.qos.priority,
                "reason": intent.reason,
                "consumed_bits": used.bits if used else None,
                "rate_bps": round(used.rate_bps, 1) if used and used.rate_bps is not None else None,
                "buffer": buffers.get(intent.intent_id),
                "failures": failures.get(intent.intent_id, 0),
            }
        )
    shown.sort(key=lambda i: (str(i["pair"]), str(i["id"])))
    return {
        "time": now,
        "control": "static" if health is None else "data-driven",
        "nodes": nodes,
        "links": links,
        "intents": shown,
        "feed": [{"seq": e.seq, "at": e.at, "kind": e.kind, "text": e.text} for e in feed],
    }


def _condition(health: LinkHealth | None) -> str:
    if health is None:
        return ""
    if health.degraded:
        return "degraded"
    return "draining" if health.draining else "healthy"
