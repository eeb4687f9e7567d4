"""Two-phase reservations in one domain (fake clock, in-memory devices): reserve holds rate
for local requests too, commit installs an ordinary intent, release and expiry give it back;
idempotent by id; each peer held to its policy; every step audited with the peer as `who`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from common.audit import read_log
from controller.interdomain.reservations import Hold, HoldState, Refusal, ReservationRequest
from controller.model import IntentState, KeyRequest, QoS
from tests.harness.domains import Clock, domain_config, make_domain

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def transit(rate: int = 4000, **changes: Any) -> ReservationRequest:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "master_sae": "app-a",
        "slave_sae": "app-c",
        "ingress": "b_a",
        "egress": "b_c",
        "rate_bps": rate,
        "key_mode": "qkd-only",
        "origin": "A",
    }
    fields.update(changes)
    return ReservationRequest(**fields)


def test_a_reservation_holds_rate_that_a_local_request_then_cannot_take(tmp_path: Path) -> None:
    clock = Clock()
    b = make_domain("B", tmp_path, clock, rate=10_000)
    hold = b.service.reserve("A", transit(8000))
    assert isinstance(hold, Hold) and hold.state is HoldState.RESERVED
    assert hold.expires_at == clock.now + 10.0
    assert b.reserved_rate() == 8000
    local = KeyRequest(b.ids["b_a"], b.ids["b_c"], "x", ("y",), QoS(5000, 5000))
    assert not b.intents.decide(local).admitted
    second = b.service.reserve("A", transit(5000))
    assert second == Refusal(409, "no capacity between b_a and b_c")
    assert b.entries() == {n: set() for n in b.ids}  # nothing installed by a reservation


def test_commit_installs_the_segment_as_an_intent_with_the_same_id(tmp_path: Path) -> None:
    b = make_domain("B", tmp_path, Clock())
    asked = transit(3000)
    assert isinstance(b.service.reserve("A", asked), Hold)

    async def scenario() -> None:
        done = await b.service.commit("A", asked.id)
        assert isinstance(done, Hold) and done.state is HoldState.COMMITTED
        intent = b.intents.get(asked.id)
        assert intent.state is IntentState.INSTALLED and intent.bandwidth == 3000
        assert intent.request.server_app_id == "app-a"
        assert intent.request.client_app_ids == ("app-c",)
        assert b.reserved_rate() == 3000  # counted once: the intent replaced its hold
        for name in ("b_a", "betamiddle", "b_c"):
            assert b.entries()[name] == {("link", asked.id), ("app", asked.id)}
        again = await b.service.commit("A", asked.id)
        assert isinstance(again, Hold) and again.state is HoldState.COMMITTED
        released = await b.service.release("A", asked.id)
        assert isinstance(released, Hold) and released.state is HoldState.RELEASED
        assert b.entries() == {n: set() for n in b.ids}
        assert b.reserved_rate() == 0

    run(scenario())


def test_an_uncommitted_reservation_expires_and_its_rate_comes_back(tmp_path: Path) -> None:
    clock = Clock()
    b = make_domain("B", tmp_path, clock)
    asked = transit(9000)
    b.service.reserve("A", asked)
    clock.now += 9.9
    assert b.service.expire() == [] and b.reserved_rate() == 9000
    clock.now += 0.1
    [expired] = b.service.expire()
    assert expired.state is HoldState.EXPIRED and b.reserved_rate() == 0
    late = run(b.service.commit("A", asked.id))
    assert isinstance(late, Refusal) and late.status == 409 and "expired" in late.reason
    entries = list(read_log(b.audit))
    assert [(e.who, e.action, e.outcome) for e in entries] == [
        ("peer:A", "interdomain.reserve", "ok"),
        ("peer:A", "interdomain.expire", "ok"),
        ("peer:A", "interdomain.commit", "refused"),
    ]


def test_the_same_id_again_gets_the_same_answer_and_another_request_under_it_409(
    tmp_path: Path,
) -> None:
    b = make_domain("B", tmp_path, Clock())
    asked = transit(4000)
    first = b.service.reserve("A", asked)
    assert b.service.reserve("A", asked) == first
    assert b.reserved_rate() == 4000  # held once
    other = b.service.reserve("A", transit(100, id=asked.id))
    assert isinstance(other, Refusal) and other.status == 409


def test_policy_refuses_unknown_modes_unallowed_saes_and_rate_over_the_cap(tmp_path: Path) -> None:
    config = domain_config("C", allow_saes=("app-x*",), rate_cap_bps=5000, key_modes=("qkd-only",))
    c = make_domain("C", tmp_path, Clock(), config=config)
    to_c = {"ingress": "c_b", "egress": None, "origin": "B"}
    mode = c.service.reserve("B", transit(10, key_mode="pqc-only", **to_c))
    assert isinstance(mode, Refusal) and mode.status == 403 and "pqc-only" in mode.reason
    sae = c.service.reserve("B", transit(10, **to_c))
    assert sae == Refusal(403, "SAE app-c may not be reached from domain B")
    open_c = make_domain("C", tmp_path, Clock(), config=domain_config("C", rate_cap_bps=5000))
    assert isinstance(open_c.service.reserve("B", transit(3000, **to_c)), Hold)
    over = open_c.service.reserve("B", transit(2001, **to_c))
    assert isinstance(over, Refusal) and over.status == 403 and "rate cap" in over.reason
    assert open_c.reserved_rate() == 3000


def test_bad_segments_and_strangers_are_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    b = make_domain("B", tmp_path, Clock())
    not_border = b.service.reserve("A", transit(ingress="betamiddle"))
    assert not_border == Refusal(400, "ingress: betamiddle is not a border of domain B")
    foreign = b.service.reserve("A", transit(ingress=None))
    assert foreign == Refusal(400, "master_sae: app-a is not served in domain B")
    posing = b.service.reserve("A", transit(origin="C"))
    assert isinstance(posing, Refusal) and posing.status == 403
    stranger = b.service.reserve("Z", transit(origin="Z"))
    assert stranger == Refusal(403, "domain Z is not a peer of domain B")
    unknown = run(b.service.release("A", str(uuid.uuid4())))
    assert isinstance(unknown, Refusal) and unknown.status == 404
    asked = transit()
    b.service.reserve("A", asked)
    assert isinstance(run(b.service.commit("C", asked.id)), Refusal)  # not C's to commit
    assert b.reserved_rate() == 4000


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"rate_bps": -1}, "rate_bps"),
        ({"rate_bps": "9"}, "rate_bps"),
        ({"master_sae": ""}, "master_sae"),
        ({"ingress": None, "egress": None}, "ingress"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_malformed_request_names_its_field(change: dict[str, Any], field: str) -> None:
    body = transit().to_json() | change
    with pytest.raises(ValueError, match=f"^{field}"):
        ReservationRequest.from_json(body)
