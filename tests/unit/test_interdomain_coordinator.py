"""The origin's two phases across three domains A – B – C (in-process peers, fake devices):
all commit or none holds anything; a peer that stops answering is bounded; withdrawing the
origin's intent releases the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from controller.interdomain.coordinator import Coordinator
from controller.model import IntentState, KeyRequest, QoS
from tests.harness.domains import Clock, Domain, LocalPeer, chain, exchange_views

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def settled(domains: dict[str, Domain], work: Coroutine[Any, Any, T]) -> T:
    """`work`, then every view push it caused."""
    result = await work
    for domain in domains.values():
        await coordinator(domain).settle_pushes()
    return result


def coordinator(domain: Domain) -> Coordinator:
    assert domain.coordinator is not None
    return domain.coordinator


def peer(domains: dict[str, Domain], at: str, of: str) -> LocalPeer:
    client = coordinator(domains[at]).peers[of]
    assert isinstance(client, LocalPeer)
    return client


def a_to_c(a: Domain, rate: int = 2000) -> KeyRequest:
    return KeyRequest(a.ids["alphainner"], a.ids["a_b"], "app-a", ("app-c",), QoS(rate, rate))


def nothing_live(*domains: Domain) -> bool:
    return all(not d.holding() and d.reserved_rate() == 0 for d in domains)


def test_a_request_for_an_sae_of_c_installs_a_segment_in_every_domain(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a, b, c = domains["A"], domains["B"], domains["C"]

    async def scenario() -> None:
        await exchange_views(domains)
        assert a.service.view().reach == {"app-b1": ("B",), "app-c": ("B", "C")}
        request = a_to_c(a)
        assert coordinator(a).claims(request)
        outcome = await coordinator(a).submit(request)
        assert outcome.committed, outcome.reason
        assert outcome.domains == ("A", "B", "C")
        ident = outcome.id
        for domain, ends in (
            (a, ("alphainner", "a_b")),
            (b, ("b_a", "b_c")),
            (c, ("c_b", "gammainner")),
        ):
            intent = domain.intents.get(ident)
            assert intent.state is IntentState.INSTALLED
            assert intent.request.server_app_id == "app-a"
            assert intent.request.client_app_ids == ("app-c",)
            assert intent.path is not None
            names = [domain.snapshot.name_of(n) for n in intent.path.nodes]
            assert (names[0], names[-1]) == ends
            assert domain.reserved_rate() == 2000
        # B's controller now sees B's own application request as installed, not as a new one
        from_b = KeyRequest(b.ids["b_a"], b.ids["b_c"], "app-a", ("app-c",), QoS(2000, 2000))
        assert not coordinator(b).claims(from_b)
        # withdrawing the origin's intent releases the others
        await a.intents.withdraw(ident)
        async with asyncio.timeout(5):
            while not nothing_live(b, c):
                await asyncio.sleep(0.01)
        assert all(not any(e.values()) for e in (a.entries(), b.entries(), c.entries()))

    run(settled(domains, scenario()))


def test_a_refusal_in_c_leaves_nothing_reserved_in_a_and_b(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock(), rates={"C": 1000})
    a, b, c = domains["A"], domains["B"], domains["C"]

    async def scenario() -> None:
        await exchange_views(domains)
        outcome = await coordinator(a).submit(a_to_c(a, 2000))
        assert not outcome.committed
        assert (
            "domain C refused the reserve (409): no capacity between c_b and app-c"
            in outcome.reason
        )
        assert nothing_live(a, b, c)
        assert not any(b.entries().values()) and not any(c.entries().values())
        # the refusal is written on the source node, as any rejection
        [rejected] = [i for i in a.intents.intents() if i.state is IntentState.REJECTED]
        assert "no capacity between c_b and app-c" in rejected.reason
        assert a.entries()["alphainner"] == {("app", rejected.intent_id)}
        assert peer(domains, "A", "B").calls == ["reserve", "release"]

    run(settled(domains, scenario()))


def test_a_peer_that_stops_answering_leaves_nothing_held_within_bounded_time(
    tmp_path: Path,
) -> None:
    domains = chain(tmp_path, Clock())
    a, b, c = domains["A"], domains["B"], domains["C"]

    async def scenario() -> None:
        await exchange_views(domains)
        peer(domains, "A", "C").hang = True
        started = time.monotonic()
        outcome = await coordinator(a).submit(a_to_c(a))
        elapsed = time.monotonic() - started
        assert not outcome.committed
        assert "domain C did not answer the reserve" in outcome.reason
        assert elapsed < 3 * coordinator(a).timeout_s + 1.0  # reserve and release, each bounded
        assert nothing_live(a, b, c)

    run(settled(domains, scenario()))


def test_a_commit_failing_after_c_committed_withdraws_c(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a, b, c = domains["A"], domains["B"], domains["C"]

    async def scenario() -> None:
        await exchange_views(domains)
        peer(domains, "A", "B").refuse_commit = True
        outcome = await coordinator(a).submit(a_to_c(a))
        assert not outcome.committed and "domain B refused the commit (502)" in outcome.reason
        assert peer(domains, "A", "C").calls == ["reserve", "commit", "release"]
        assert nothing_live(a, b, c)
        assert not any(c.entries().values())  # C had installed its segment: gone again

    run(settled(domains, scenario()))


def test_only_requests_toward_a_foreign_sae_through_a_border_are_claimed(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a, c = domains["A"], domains["C"]
    assert coordinator(a).claims(a_to_c(a))
    own = KeyRequest(c.ids["c_b"], c.ids["gammainner"], "app-a", ("app-c",))
    assert not coordinator(c).claims(own)  # app-c is C's own SAE
    inner = KeyRequest(a.ids["a_b"], a.ids["alphainner"], "app-a", ("app-c",))
    assert not coordinator(a).claims(inner)  # the remote node is no border


def test_a_domain_without_the_views_refuses_saying_so(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a = domains["A"]
    outcome = run(settled(domains, coordinator(a).submit(a_to_c(a))))
    assert not outcome.committed and "no domain through B reaches SAE app-c" in outcome.reason
    assert nothing_live(*domains.values())


def test_a_refused_request_is_retried_as_a_whole_never_installed_alone(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a, b, c = domains["A"], domains["B"], domains["C"]

    async def scenario() -> None:
        await exchange_views(domains)
        local_c = KeyRequest(c.ids["c_b"], c.ids["gammainner"], "x", ("y",), QoS(9000, 9000))
        busy = await c.intents.submit(local_c)
        assert busy.state is IntentState.INSTALLED
        outcome = await coordinator(a).submit(a_to_c(a, 2000))
        assert not outcome.committed
        [record] = list(coordinator(a).refused)
        await a.intents.retry_waiting()  # rate came free in A: still nothing installed alone
        assert [i.state for i in a.intents.intents()] == [IntentState.REJECTED]
        await coordinator(a).retry_refused()  # C still full: the same one record
        assert list(coordinator(a).refused) == [record]
        assert len(a.intents.intents()) == 1 and a.entries()["alphainner"] == {("app", record)}
        await c.intents.withdraw(busy.intent_id)
        await coordinator(a).retry_refused()
        assert coordinator(a).refused == {}
        [ident] = list(coordinator(a).sessions)
        for domain in (a, b, c):
            assert domain.intents.get(ident).state is IntentState.INSTALLED
        assert a.intents.get(record).state is IntentState.WITHDRAWN
        assert a.entries()["alphainner"] == {("link", ident), ("app", ident)}

    run(settled(domains, scenario()))


def test_a_domain_pushes_its_view_to_its_peers_when_its_rates_change(tmp_path: Path) -> None:
    domains = chain(tmp_path, Clock())
    a, b = domains["A"], domains["B"]

    async def scenario() -> None:
        await exchange_views(domains)
        before = b.service.peer_views["A"].rate("a_b", "app-a")
        assert before == 10_000
        outcome = await coordinator(a).submit(a_to_c(a, 2000))
        assert outcome.committed
        for domain in domains.values():
            await coordinator(domain).settle_pushes()
        # no poll in between: A told B itself
        assert b.service.peer_views["A"].rate("a_b", "app-a") == before - 2000
        posing = b.service.accept_view("A", domains["C"].service.view())
        assert posing.status == 403  # type: ignore[union-attr]

    run(settled(domains, scenario()))
