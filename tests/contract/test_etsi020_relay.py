"""A key from an application of domain A to one of domain B: A's relay to its border KM, the
ETSI 020 hand-off at the border site (a CA per domain), B's relay to the far KM.

Each domain is a lab plan of its own (its own CA); the agents are scripted (tests/harness/relay.py)
and `install_path` writes what each domain's controller installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from common.config import Address
from common.protos import relay_pb2
from km.config import KmConfig, KmInterdomain, KmInterdomainPeer
from km.interdomain.component import Interdomain
from km.interdomain.journal import VoidState
from km.key_store import ClaimFailure, KeyClaimError, KeyStore, StoredKey
from km.relay.component import RelayComponent
from km.relay.errors import RelayFailure
from km.relay.forwarder import RelayTimeouts
from km.supply import KeySupply, SupplyError
from lab.launcher import free_ports
from lab.plan import LabPlan
from lab.timeline import Tracer, read_events
from tests.harness.configs import km_config_of
from tests.harness.relay import FakeAgent, install_path, make_plan
from tests.harness.relay import wait_until as _wait_until


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """tests.harness.relay.wait_until with a deadline for a machine shared with others."""
    await _wait_until(condition, timeout, what)


FAST = RelayTimeouts(link_key_s=1.0, per_hop_s=3.0, entry_s=1.0, connect_s=1.0)
# app1 at a1 and app0 at the border a_b (domain A); appC at b2 (domain B)
APPS_A = {"app1": "a1", "app0": "a_b", "appC": "a_b"}
APPS_B = {"appC": "b2", "app1": "b_a", "app0": "b_a"}


@dataclasses.dataclass
class TwoDomains:
    plans: dict[str, LabPlan]
    agents: dict[str, FakeAgent]
    kms: dict[str, RelayComponent]
    stores: dict[str, KeyStore]
    borders: dict[str, Interdomain]

    def install(self, master: str) -> None:
        """What A's and B's controllers install for master → appC: one segment each."""
        install_path({n: self.agents[n] for n in ("a1", "a_b")}, ["a1", "a_b"], master, ["appC"])
        install_path({n: self.agents[n] for n in ("b_a", "b2")}, ["b_a", "b2"], master, ["appC"])


def _border(config: KmConfig, domain: str, port: int, peer: KmInterdomainPeer, ca: str) -> KmConfig:
    return dataclasses.replace(
        config,
        interdomain=KmInterdomain(
            domain=domain,
            listen=Address("127.0.0.1", port),
            trusted_cas=(Path(ca),),
            peers=(peer,),
            ack_timeout_s=3.0,
        ),
    )


@contextlib.asynccontextmanager
async def two_domains(tmp: Path) -> AsyncIterator[TwoDomains]:
    plans = {
        "A": make_plan(tmp / "A", ["a1", "a_b"], [("a1", "a_b")]),
        "B": make_plan(tmp / "B", ["b_a", "b2"], [("b_a", "b2")]),
    }
    domain_of = {"a1": "A", "a_b": "A", "b_a": "B", "b2": "B"}
    port_a, port_b = free_ports(2)
    configs = {
        node: dataclasses.replace(
            km_config_of(plans[d], node), applications=APPS_A if d == "A" else APPS_B
        )
        for node, d in domain_of.items()
    }
    configs["a_b"] = _border(
        configs["a_b"],
        "A",
        port_a,
        KmInterdomainPeer("B", "b_a", f"https://127.0.0.1:{port_b}/kmapi/v1", ("appC",)),
        plans["B"].credentials.ca_cert,
    )
    configs["b_a"] = _border(
        configs["b_a"],
        "B",
        port_b,
        KmInterdomainPeer("A", "a_b", f"https://127.0.0.1:{port_a}/kmapi/v1", ("app1", "app0")),
        plans["A"].credentials.ca_cert,
    )
    agents = {n: FakeAgent(plans[d], n) for n, d in domain_of.items()}
    stores = {n: KeyStore(tmp / f"{n}.sqlite") for n in domain_of}
    kms = {
        n: RelayComponent(configs[n], stores[n], timeouts=FAST, admission_timeout_s=1.0)
        for n in domain_of
    }

    def relay_from(node: str) -> object:
        async def relay(keys: Sequence[StoredKey], slave_node: str) -> None:
            first = keys[0]
            await kms[node].supplier.enc_keys(
                first.master, first.slaves, slave_node, len(keys), first.size_bits, keys=keys
            )

        return relay

    (tmp / "traces").mkdir()
    tracers = {n: Tracer(f"km:{n}", str(tmp / "traces" / f"{n}.jsonl")) for n in ("a_b", "b_a")}
    borders = {
        n: Interdomain(
            configs[n],
            stores[n],
            relay=relay_from(n),  # type: ignore[arg-type]
            void_relay=kms[n].supplier.void,
            tracer=tracers[n],
        )
        for n in ("a_b", "b_a")
    }
    for node, border in borders.items():
        kms[node].forwarder.hand_offs = border
    try:
        for agent in agents.values():
            await agent.start()
        for km in kms.values():
            await km.start()
        for border in borders.values():
            await border.start()
        yield TwoDomains(plans, agents, kms, stores, borders)
    finally:
        for border in borders.values():
            await border.stop()
        for km in kms.values():
            await km.stop()
        for agent in agents.values():
            await agent.stop()
        for store in stores.values():
            store.close()
        for tracer in tracers.values():
            tracer.close()


async def _links_ready(lab: TwoDomains) -> None:
    pools = [p for km in lab.kms.values() for p in km.pools.pools]
    await wait_until(
        lambda: (
            all(p.synced and p.ready_for_sending() >= 4 for p in pools)
            and not any(km.forwarder.link_sync.starting for km in lab.kms.values())
        ),
        what="link keys",
    )


def test_keys_from_domain_a_reach_domain_b_through_the_border_hand_off(tmp_path: Path) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            lab.install("app1")
            await _links_ready(lab)
            supplier = lab.kms["a1"].supplier
            keys = await supplier.enc_keys("app1", ["appC"], "a_b", 2, 256)
            far = lab.stores["b2"].claim("appC", "app1", [k.key_id for k in keys])
            assert [k.material for k in far] == [k.material for k in keys]
            # the border KMs keep nothing; their journals say relayed
            assert len(lab.stores["a_b"]) == 0 and len(lab.stores["b_a"]) == 0
            assert lab.borders["a_b"].journal.counts() == {"outgoing.relayed": 2}
            await wait_until(lambda: not lab.borders["b_a"].journal.unacked())
            assert lab.borders["b_a"].journal.counts() == {"incoming.relayed": 2}
            with pytest.raises(KeyClaimError):  # exactly once
                lab.stores["b2"].claim("appC", "app1", [k.key_id for k in keys])

    asyncio.run(run())
    # the lab timeline shows the hand-off at the border site, key_IDs only
    events = [(e.source, e.event) for e in read_events(tmp_path / "traces")]
    assert ("km:a_b", "interdomain.handoff.sent") in events
    assert ("km:b_a", "interdomain.received") in events
    assert ("km:b_a", "interdomain.delivered") in events
    assert ("km:a_b", "interdomain.handoff.acked") in events


def test_an_application_at_the_border_node_gets_keys_for_the_other_domain(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            lab.install("app0")
            await _links_ready(lab)
            supply = KeySupply("a_b", APPS_A, lab.stores["a_b"], lab.kms["a_b"].supplier)
            supply.foreign = lab.borders["a_b"]
            keys = await supply.enc_keys("app0", ["appC"], 1, 256)
            far = lab.stores["b2"].claim("appC", "app0", [k.key_id for k in keys])
            assert [k.material for k in far] == [keys[0].material]
            assert len(lab.stores["a_b"]) == 0

    asyncio.run(run())


def test_a_far_domain_without_its_segment_fails_the_request_and_keeps_no_key(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            # only domain A installed its segment: b_a has no association toward b2
            install_path({n: lab.agents[n] for n in ("a1", "a_b")}, ["a1", "a_b"], "app1", ["appC"])
            await _links_ready(lab)
            with pytest.raises(SupplyError, match=r"hand-off a_b→b_a \(B\)") as info:
                await lab.kms["a1"].supplier.enc_keys("app1", ["appC"], "a_b", 1, 256)
            assert info.value.status_code == 503
            await wait_until(
                lambda: lab.borders["a_b"].journal.counts() == {"outgoing.voided": 1},
                what="the void delivered",
            )
            assert all(len(s) == 0 for s in lab.stores.values())
            assert lab.borders["b_a"].journal.counts() == {"incoming.voided": 1}

    asyncio.run(run())


def test_the_end_km_takes_a_resumed_relay_of_identical_keys_once_and_refuses_another_value(
    tmp_path: Path,
) -> None:
    """What a border KM resuming its journal after a crash does: relay the same keys again."""

    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            lab.install("app1")
            await _links_ready(lab)
            supplier = lab.kms["b_a"].supplier
            keys = supplier.mint.keys("app1", ["appC"], 2, 256)
            await supplier.enc_keys("app1", ["appC"], "b2", 2, 256, keys=keys)
            await supplier.enc_keys("app1", ["appC"], "b2", 2, 256, keys=keys)  # resumed
            assert len(lab.stores["b2"]) == 2
            forged = [dataclasses.replace(k, material=bytes(32)) for k in keys]
            with pytest.raises(SupplyError, match="hop b_a→b2: a key_ID is already in the store"):
                await supplier.enc_keys("app1", ["appC"], "b2", 2, 256, keys=forged)
            far = lab.stores["b2"].claim("appC", "app1", [k.key_id for k in keys])
            assert [k.material for k in far] == [k.material for k in keys]
            assert len(lab.stores["b2"]) == 0

    asyncio.run(run())


async def _keys_at_b2(lab: TwoDomains, number: int) -> list[StoredKey]:
    """app1 (a1, domain A) gets `number` keys for appC (b2, domain B): relayed in A, handed
    off at the border site, relayed in B to b2, where they wait for appC."""
    # no keys relayed ahead (buffer 0): only the request's keys travel
    for domain_path in (["a1", "a_b"], ["b_a", "b2"]):
        agents = {n: lab.agents[n] for n in domain_path}
        install_path(agents, domain_path, "app1", ["appC"], buffer=0)
    await _links_ready(lab)
    keys = await lab.kms["a1"].supplier.enc_keys("app1", ["appC"], "a_b", number, 256)
    assert len(lab.stores["b2"]) == number
    await wait_until(lambda: not lab.borders["b_a"].journal.unacked(), what="acks sent")
    return keys


def test_a_void_after_the_relay_inside_the_next_domain_removes_the_key_at_the_end_km(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            keys = await _keys_at_b2(lab, 2)
            ids = [k.key_id for k in keys]
            # a_b takes back what it handed to b_a: ETSI 020 void, then B's relay void to b2
            result = await lab.borders["a_b"].void_handed(ids, time.monotonic() + 5)
            assert sorted(result.voided) == sorted(ids)
            assert result.delivered == () and result.not_present == ()
            assert len(lab.stores["b2"]) == 0
            with pytest.raises(KeyClaimError) as info:
                lab.stores["b2"].claim("appC", "app1", ids[:1])
            assert info.value.reason is ClaimFailure.UNKNOWN_KEY
            # appC's dec_keys at b2 (ETSI 014): the same answer as for a key_ID never issued
            supply = KeySupply("b2", APPS_B, lab.stores["b2"], lab.kms["b2"].supplier)
            never = str(uuid.uuid4())
            answers = []
            for key_id in (ids[0], never):
                with pytest.raises(SupplyError) as refused:
                    supply.dec_keys("appC", "app1", [key_id])
                answers.append(
                    (refused.value.status_code, str(refused.value).replace(key_id, "ID"))
                )
            assert answers[0] == answers[1] == (400, answers[1][1])
            assert "unknown key_ID" in answers[0][1]
            rows = lab.borders["b_a"].journal.incoming(ids)
            assert {r.void for r in rows.values()} == {VoidState.VOIDED}
            assert lab.borders["a_b"].journal.counts() == {"outgoing.voided": 2}

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    events = [(e.source, e.event) for e in read_events(tmp_path / "traces")]
    assert ("km:b_a", "interdomain.voided") in events
    for value in _values_in(caplog.text):
        raise AssertionError(f"key material in the log: {value[:6]}...")


def _values_in(text: str) -> list[str]:
    """Anything in `text` that looks like a 256-bit key in base64 or hex."""
    return re.findall(r"[A-Za-z0-9+/]{43}=|[0-9a-f]{64}", text)


def test_a_void_of_a_key_already_delivered_reports_it_and_a_retry_answers_the_same(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            keys = await _keys_at_b2(lab, 2)
            ids = [k.key_id for k in keys]
            got = lab.stores["b2"].claim("appC", "app1", ids[:1])  # appC's dec_keys
            assert [k.material for k in got] == [keys[0].material]
            first = await lab.borders["a_b"].void_handed(ids, time.monotonic() + 5)
            again = await lab.borders["a_b"].void_handed(ids, time.monotonic() + 5)
            assert first == again
            assert first.delivered == (ids[0],) and first.voided == (ids[1],)
            assert len(lab.stores["b2"]) == 0
            # the 020 answer said `failed` for the delivered key; b_a journaled it
            rows = lab.borders["b_a"].journal.incoming(ids)
            assert rows[ids[0]].void is VoidState.DELIVERED
            assert rows[ids[1]].void is VoidState.VOIDED
            # the voided key_ID is never stored again at b2 (a resumed relay is refused)
            with pytest.raises(SupplyError, match="hop b_a→b2: a key_ID was voided"):
                await lab.kms["b_a"].supplier.enc_keys(
                    "app1", ["appC"], "b2", 1, 256, keys=keys[1:]
                )

    asyncio.run(run())


def test_a_border_restarted_in_the_middle_of_a_void_finishes_it(tmp_path: Path) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            keys = await _keys_at_b2(lab, 1)
            ids = [keys[0].key_id]
            b2_config = lab.kms["b2"].config
            await lab.kms["b2"].stop()  # the end KM is down: the void cannot reach it
            with pytest.raises(RelayFailure, match="void a_b→b_a: no answer"):
                await lab.borders["a_b"].void_handed(ids, time.monotonic() + 3)
            assert lab.borders["a_b"].journal.counts() == {"outgoing.voiding": 1}
            owed = lab.borders["b_a"].journal.voids_in_progress()
            assert [r.key_id for r in owed] == ids
            # b_a stops in the middle (its journal holds the void owed) and starts again
            old = lab.borders["b_a"]
            await old.stop()
            restarted = Interdomain(
                old.config,
                lab.stores["b_a"],
                relay=old.relay,
                void_relay=lab.kms["b_a"].supplier.void,
            )
            lab.borders["b_a"] = restarted
            lab.kms["b_a"].forwarder.hand_offs = restarted
            await restarted.start()
            lab.kms["b2"] = RelayComponent(
                b2_config, lab.stores["b2"], timeouts=FAST, admission_timeout_s=1.0
            )
            await lab.kms["b2"].start()
            await wait_until(lambda: len(lab.stores["b2"]) == 0, what="the void finished at b2")
            await wait_until(
                lambda: not restarted.journal.voids_in_progress(), what="b_a's void journaled done"
            )
            await wait_until(
                lambda: lab.borders["a_b"].journal.counts() == {"outgoing.voided": 1},
                what="a_b's owed void answered",
            )
            with pytest.raises(KeyClaimError):
                lab.stores["b2"].claim("appC", "app1", ids)

    asyncio.run(run())


def test_a_relay_void_is_checked_as_a_relay_hop_and_a_refused_one_removes_nothing(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with two_domains(tmp_path) as lab:
            keys = await _keys_at_b2(lab, 1)
            b2 = lab.kms["b2"].forwarder
            entry = b2.associations.view.destination_association("app1", ["appC"])
            assert entry is not None and entry.virt_link_id is not None
            b_a = lab.kms["b_a"].config.qkdn_id
            msg = relay_pb2.RelayVoid(
                virt_link_id=entry.virt_link_id,
                hop=1,
                sender=b_a,
                receiver=b2.qkdn_id,
                key_ids=[keys[0].key_id],
                master="app1",
                slaves=["appC"],
            )
            deadline = time.monotonic() + 3
            with pytest.raises(RelayFailure, match="the TLS peer 'a_b' may not send as b_a"):
                await b2.voids.receive(msg, "a_b", deadline)
            other = relay_pb2.RelayVoid()
            other.CopyFrom(msg)
            other.master = "app0"  # the virtual link carries app1's keys only
            with pytest.raises(RelayFailure, match="does not carry keys app0→appC"):
                await b2.voids.receive(other, "b_a", deadline)
            other.CopyFrom(msg)
            other.virt_link_id = str(uuid.uuid4())
            with pytest.raises(RelayFailure, match="no forwarding entry"):
                await b2.voids.receive(other, "b_a", deadline)
            assert len(lab.stores["b2"]) == 1
            ack = await b2.voids.receive(msg, "b_a", deadline)  # the real previous hop
            assert list(ack.voided) == [keys[0].key_id]
            assert len(lab.stores["b2"]) == 0

    asyncio.run(run())
