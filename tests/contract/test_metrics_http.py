"""/metrics over real HTTP: a key manager's ETSI 014 front end and hosted agents, scraped."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import AgentMetrics
from agents.node import NodeSettings
from common.config import Address
from common.metrics import MetricsServer
from km.metrics import KmMetrics
from lab.pki import LabPki
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.etsi014 import KmHarness, make_pki

DEADLINE_S = 20.0


def scrape(server: MetricsServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the server's /metrics, by (name, labels)."""
    response = httpx.get(server.url, timeout=10.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), float("nan"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def km(tmp_path: Path, pki: LabPki) -> Iterator[tuple[KmHarness, MetricsServer]]:
    harness = KmHarness(tmp_path, pki)
    registry = CollectorRegistry()
    harness.service.metrics = KmMetrics(registry).for_node("n1")
    server = MetricsServer.start(registry, Address("127.0.0.1", 0))
    try:
        yield harness, server
    finally:
        server.stop()
        harness.close()


def test_a_key_managers_metrics_count_the_requests_made_over_etsi_014(
    km: tuple[KmHarness, MetricsServer],
) -> None:
    harness, server = km
    with harness.client("a") as a, harness.client("b") as b:
        for _ in range(3):
            assert a.get("/d/enc_keys", params={"number": 2}).status_code == 200
        local = a.get("/b/enc_keys", params={"number": 1, "size": 512})
        assert local.status_code == 200
        key_id = local.json()["keys"][0]["key_ID"]
        assert b.post("/a/dec_keys", json={"key_IDs": [{"key_ID": key_id}]}).status_code == 200
        assert a.get("/nobody/enc_keys").status_code == 400
    samples = scrape(server)
    remote = {"node": "n1", "method": "enc_keys", "master_sae": "a", "slave_sae": "d"}
    assert value(samples, "qkdsdn_km_key_response_delay_seconds_count", **remote) == 3
    assert value(samples, "qkdsdn_km_key_response_delay_seconds_sum", **remote) > 0
    assert value(samples, "qkdsdn_km_keys_delivered_total", **remote) == 6
    assert value(samples, "qkdsdn_km_key_bits_delivered_total", **remote) == 6 * 256
    local_pair = {"node": "n1", "master_sae": "a", "slave_sae": "b"}
    assert (
        value(samples, "qkdsdn_km_key_bits_delivered_total", method="enc_keys", **local_pair) == 512
    )
    assert value(samples, "qkdsdn_km_keys_delivered_total", method="dec_keys", **local_pair) == 1
    refused = {"node": "n1", "method": "enc_keys", "master_sae": "a", "slave_sae": "nobody"}
    assert (
        value(samples, "qkdsdn_km_key_requests_refused_total", **refused, reason="bad_request") == 1
    )
    text = httpx.get(server.url, timeout=10.0).text
    assert key_id not in text  # labels are names and SAE ids, never key material


def test_hosted_agents_report_each_links_rate_and_count_their_notifications(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    link = plan.links[0].qkdl_id

    async def scenario() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        metrics = AgentMetrics(CollectorRegistry())
        settings = NodeSettings(perf_interval_s=0.05)
        async with running_agents(
            plan, settings=settings, metrics=metrics, plan_ports=False
        ) as handles:
            server = MetricsServer.start(metrics.registry, Address("127.0.0.1", 0))
            try:
                deadline = time.monotonic() + DEADLINE_S
                while True:
                    samples = await asyncio.to_thread(scrape, server)
                    sent = value(
                        samples,
                        "qkdsdn_agent_notifications_total",
                        node="a",
                        event="sdqkdn_link_perf_update",
                    )
                    if sent >= 2:
                        break
                    assert time.monotonic() < deadline, "no perf update counted in time"
                    await asyncio.sleep(0.05)
                report = handles["a"].node.report(link)
                skr = value(samples, "qkdsdn_link_skr_bps", node="a", peer="b", qkdl_id=link)
                assert skr > 0 and abs(skr - report.skr_bps) <= 0.2 * report.skr_bps
                return samples
            finally:
                server.stop()

    samples = asyncio.run(scenario())
    a_to_b = {"node": "a", "peer": "b", "qkdl_id": link}
    assert value(samples, "qkdsdn_link_up", **a_to_b) == 1
    assert value(samples, "qkdsdn_link_state", **a_to_b, state="ACTIVE") == 1
    assert value(samples, "qkdsdn_link_state", **a_to_b, state="OFF") == 0
    assert 0 < value(samples, "qkdsdn_link_qber", **a_to_b) < 0.5
    assert value(samples, "qkdsdn_link_expected_skr_bps", **a_to_b) > 0
    assert value(samples, "qkdsdn_node_up", node="b") == 1


def test_a_metrics_address_that_is_taken_fails_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            MetricsServer.start(CollectorRegistry(), Address("127.0.0.1", port))
