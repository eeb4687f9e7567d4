"""The two ends of a link re-agree at once when one end's position jumps (a lost batch)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from lxml import etree

from agents.datastore import DatastoreName
from agents.main import AgentHandle
from controller.intents.compile import RelaySettings, compile_install
from controller.model import KeyRequest
from controller.model import Path as RoutePath
from km import link_pools
from km.key_store import KeyStore
from km.relay.component import RelayComponent
from km.relay.forwarder import RelayTimeouts
from lab.pki import create_lab_pki
from lab.plan import LabPlan, Settings
from lab.timeline import Tracer, read_events
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of
from tests.harness.relay import wait_until

NODES = ["qnode1", "qnode2"]
APPS = {"qnode1": "app1", "qnode2": "app2"}
RESYNC_BOUND_S = 5.0  # from the lost batch to both ends agreeing again, no relay asked
TIMEOUTS = RelayTimeouts(link_key_s=0.5, per_hop_s=1.5, entry_s=0.5)


class _LostReply:
    """A GetKeyBatch whose answer never reaches the KM: the module handed the keys out (they
    are consumed there), then the caller sees its deadline pass."""

    def __init__(self, call: Any, indices: list[int], lost: list[int]) -> None:
        self._call = call
        self._indices = indices
        self._lost = lost

    def __await__(self) -> Any:
        return self._lose().__await__()

    async def _lose(self) -> Any:
        reply = await self._call
        self._lost.extend(key.index for key in reply.keys if key.key_buffer)
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="reply lost (test)",
        )

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()


class _LosingStub:
    """The module stub of one KM, whose first GetKeyBatch reply is lost."""

    def __init__(self, real: Any, lost: list[int]) -> None:
        self._real = real
        self._lost = lost
        self._armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def GetKeyBatch(self, request: Any, timeout: float | None = None) -> Any:
        call = self._real.GetKeyBatch(request, timeout=timeout)
        if not self._armed:
            return call
        self._armed = False
        return _LostReply(call, list(request.indices), self._lost)


def install_both_ways(plan: LabPlan, agents: dict[str, AgentHandle]) -> None:
    """What the controller sends for app1→app2 over qnode1→qnode2 and app2→app1 back."""
    qkdl_id = plan.links[0].qkdl_id
    for source, target in (("qnode1", "qnode2"), ("qnode2", "qnode1")):
        route = RoutePath((plan.node(source).qkdn_id, plan.node(target).qkdn_id), (qkdl_id,))
        request = KeyRequest(route.nodes[0], route.nodes[-1], APPS[source], (APPS[target],))
        edits = compile_install(str(uuid.uuid4()), request, route, 512, RelaySettings("aes-gcm", 0))
        for name in NODES:
            edit = edits[plan.node(name).qkdn_id]
            agents[name].datastore.edit(DatastoreName.RUNNING, etree.fromstring(edit.config))


def test_a_lost_batch_at_one_end_is_resynchronised_before_any_relay_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """qnode1's first batch (both parities) is consumed at its module but its reply is lost,
    so qnode1 jumps past indices qnode2 holds. qnode1 tells qnode2 at once (SyncLink): relays
    both ways then succeed without one refused hop, and no link-key index is used twice."""
    plan = make_test_plan(
        tmp_path,
        NODES,
        [LinkSpec("qnode1", "qnode2", skr_bps=200_000.0)],
        [("app1", "qnode1"), ("app2", "qnode2")],
        settings=Settings(link_pool_max_bits=256 * 64),
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    traces = tmp_path / "trace"
    traces.mkdir()
    tracers = {n: Tracer(f"km:{n}", str(traces / f"{n}.jsonl")) for n in NODES}
    lost: list[int] = []
    real_stub = link_pools._KEY_DELIVERY_STUB
    caplog.set_level(logging.INFO, logger="km.relay.servicer")

    async def run() -> None:
        stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in NODES}
        kms = {
            n: RelayComponent(
                km_config_of(plan, n), stores[n], timeouts=TIMEOUTS, tracer=tracers[n]
            )
            for n in NODES
        }
        try:
            async with running_agents(plan, persist=False) as agents:
                monkeypatch.setattr(
                    link_pools, "_KEY_DELIVERY_STUB", lambda ch: _LosingStub(real_stub(ch), lost)
                )
                await kms["qnode1"].start()  # its fetchers hold the losing stub
                monkeypatch.setattr(link_pools, "_KEY_DELIVERY_STUB", real_stub)
                await kms["qnode2"].start()
                install_both_ways(plan, agents)
                near = kms["qnode1"].pools.for_peer("qnode2")
                far = kms["qnode2"].pools.for_peer("qnode1")
                await wait_until(lambda: bool(lost), what="qnode1's first batch lost")
                assert {i % 2 for i in lost} == {0, 1}  # both ends' indices went missing

                # qnode1 finds its module's stream past the lost keys and tells qnode2: within
                # a bound, qnode2 holds no key qnode1 lacks, and no relay had to fail for it.
                def agreed_again() -> bool:
                    """qnode2 applied a position past the lost keys (at qnode1's call after its
                    jump, or in a start-up exchange that crossed it), and no jump is pending."""
                    return (
                        near.located
                        and not near.needs_resync()
                        and any(
                            e.event == "link_key.resync"
                            and e.fields["peer"] == "qnode1"
                            and min(int(e.fields["next_even"]), int(e.fields["next_odd"]))
                            > max(lost)
                            for e in read_events(traces)
                        )
                    )

                try:
                    await wait_until(agreed_again, timeout=RESYNC_BOUND_S, what="the resync")
                except AssertionError:
                    raise AssertionError(
                        f"qnode2 not resynchronised with qnode1 after losing {lost}: {near!r}"
                        f" at {near.position} (jumps {near.jumps}, pending"
                        f" {near.needs_resync()}), {far!r} at {far.position}"
                    ) from None
                for _ in range(5):
                    for source, target in (("qnode2", "qnode1"), ("qnode1", "qnode2")):
                        supplier = kms[source].supplier
                        keys = await supplier.enc_keys(APPS[source], [APPS[target]], target, 1, 256)
                        got = stores[target].claim(
                            APPS[target], APPS[source], [k.key_id for k in keys]
                        )
                        assert [k.material for k in got] == [k.material for k in keys]
        finally:
            for km in kms.values():
                await km.stop()
            for store in stores.values():
                store.close()
            for tracer in tracers.values():
                tracer.close()

    asyncio.run(run())
    refused = [r.getMessage() for r in caplog.records if "relay refused" in r.getMessage()]
    assert refused == []
    used = Counter(
        (str(e.fields["role"]), int(e.fields["index"]))
        for e in read_events(traces)
        if e.event == "link_key.used"
    )
    assert used and [k for k, count in used.items() if count > 1] == []
