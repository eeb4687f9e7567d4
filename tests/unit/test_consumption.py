"""Per-association consumption: the KM's ledger and its reports, the agent's ledger across
KM runs, and the controller's measured rate."""

from __future__ import annotations

import asyncio

import pytest

from agents.node.consumption import MAX_PAIRS, PairReport
from agents.node.consumption import ConsumptionLedger as AgentLedger
from controller.consumption import ConsumptionBook, Usage, next_usage, source_readings
from km.consumption import ConsumptionLedger, PairUsage, report_forever


def test_the_km_counts_bits_per_master_slave_pair() -> None:
    ledger = ConsumptionLedger("run-1")
    ledger.add("app1", "app2", 3, 768)
    ledger.add("app1", "app2", 2, 512)
    ledger.add("app1", "app3", 1, 256)
    ledger.add("app1", "app3", 0, 0)  # nothing delivered: no change
    assert ledger.snapshot() == (
        PairUsage("app1", "app2", 5, 1280),
        PairUsage("app1", "app3", 1, 256),
    )
    assert ledger.revision == 3
    with pytest.raises(ValueError, match="negative"):
        ledger.add("app1", "app2", -1, 0)


def test_the_km_reports_again_after_a_change_or_a_new_agent_stream_only() -> None:
    ledger = ConsumptionLedger("run-1")
    sent: list[tuple[str, tuple[PairUsage, ...]]] = []
    generation = [1]
    accept = [True]

    async def send(run: str, pairs: tuple[PairUsage, ...]) -> bool:
        sent.append((run, pairs))
        return accept[0]

    async def scenario() -> None:
        task = asyncio.create_task(report_forever(ledger, send, lambda: generation[0], 0.001))

        async def settle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.002)

        await settle()
        assert sent == []  # nothing delivered yet: nothing to say
        ledger.add("a", "b", 1, 256)
        await settle()
        assert sent == [("run-1", (PairUsage("a", "b", 1, 256),))]
        generation[0] = 2  # the agent restarted: it lost the totals
        await settle()
        assert len(sent) == 2
        accept[0] = False  # refused: tried again each period until taken
        ledger.add("a", "b", 1, 256)
        await settle()
        assert len(sent) > 3
        accept[0] = True
        await settle()
        count = len(sent)
        await settle()
        assert len(sent) == count
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_the_agent_carries_a_restarted_kms_totals_forward() -> None:
    ledger = AgentLedger()
    assert ledger.report("run-1", [PairReport("app1", "app2", 4, 1024)]) == ""
    assert ledger.report("run-1", [PairReport("app1", "app2", 5, 1280)]) == ""
    assert ledger.bits("app1", ["app2"]) == 1280
    assert ledger.report("run-2", [PairReport("app1", "app2", 1, 256)]) == ""  # KM restarted
    assert ledger.bits("app1", ["app2"]) == 1536
    assert ledger.bits("app1", ["app2", "app2"]) == 1536  # a slave counted once
    assert ledger.bits("app1", ["app9"]) == 0


def test_the_agent_refuses_a_bad_report_and_changes_nothing() -> None:
    ledger = AgentLedger()
    ledger.report("run-1", [PairReport("app1", "app2", 5, 1280)])
    problems = {
        "km_run is required": ledger.report("", [PairReport("a", "b", 1, 1)]),
        "every pair needs a server_app_id and a client_app_id": ledger.report(
            "run-1", [PairReport("", "b", 1, 1)]
        ),
        "delivered keys and bits cannot be negative": ledger.report(
            "run-1", [PairReport("a", "b", 1, -1)]
        ),
        "the total of app1>app2 went back in the same run": ledger.report(
            "run-1", [PairReport("app1", "app2", 1, 256)]
        ),
        f"more than {MAX_PAIRS} SAE pairs": ledger.report(
            "run-1", [PairReport(f"m{i}", "s", 1, 1) for i in range(MAX_PAIRS + 1)]
        ),
    }
    for want, got in problems.items():
        assert got == want
    assert ledger.bits("app1", ["app2"]) == 1280


def test_the_controller_measures_a_smoothed_rate_from_successive_readings() -> None:
    first = next_usage(None, 1000, 10.0)
    assert first == Usage(1000, 10.0, None)
    second = next_usage(first, 3000, 12.0)
    assert second.rate_bps == 1000.0
    third = next_usage(second, 3000, 14.0)  # idle for 2 s: the rate halves (smoothing 0.5)
    assert third.rate_bps == 500.0
    assert next_usage(third, 4000, 14.0) is third  # no time passed: kept
    restarted = next_usage(third, 256, 15.0)  # installed anew: starts over
    assert restarted == Usage(256, 15.0, None)
    with pytest.raises(ValueError, match="negative"):
        next_usage(None, -1, 0.0)


def test_the_controller_reads_only_the_source_nodes_statistic() -> None:
    sources = {"i1": "n1", "i2": "n2"}
    readings = source_readings("n1", [("i1", 512), ("i2", 99), ("i3", 7), ("i4", None)], sources)
    assert readings == [("i1", 512)]
    book = ConsumptionBook()
    book.observe("i1", 0, 0.0)
    book.observe("i1", 2560, 1.0)
    book.observe("gone", 1, 0.0)
    assert book.rates() == {"i1": 2560.0}
    book.keep_only(["i1"])
    assert set(book.usage()) == {"i1"}
