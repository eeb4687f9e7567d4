"""Metric definitions of each part: names, labels, bounds, and the configs that turn them on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from agents import config as agent_config
from agents.emulator.channel import LinkStatus
from agents.metrics import AgentMetrics, _kind
from agents.node import QkdNode, Site
from common.config import ConfigError
from common.metrics import OTHER, LabelBound
from controller import config as controller_config
from controller.events import ListenerRegistry
from controller.intents.service import IntentEvent, IntentEventType
from controller.metrics import REASON_CLASSES, ControllerMetrics, reason_class
from controller.model import Intent, IntentState, KeyRequest, QoS
from km import config as km_config
from km.metrics import PAIR_LIMIT, KmMetrics
from lab.configs import write_process_configs
from lab.endpoints import Endpoints, endpoints_from_plan
from lab.launcher import km_processes
from lab.monitoring import check_scrape_config, scrape_config
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan
from tests.harness.configs import agent_config_of


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_label_bound_sends_every_tuple_past_its_limit_to_other() -> None:
    bound = LabelBound(2)
    assert bound("a", "b") == ("a", "b")
    assert bound("c", "d") == ("c", "d")
    assert bound("e", "f") == (OTHER, OTHER)
    assert bound("a", "b") == ("a", "b")  # the first ones keep their series
    assert bound.used == 2
    with pytest.raises(ValueError, match="positive limit"):
        LabelBound(0)


def test_a_key_manager_records_delay_keys_and_bits_per_application_pair() -> None:
    registry = CollectorRegistry()
    node = KmMetrics(registry).for_node("qnode1")
    node.delivered("enc_keys", "app1", "app2", 4, 1024, 0.003)
    node.delivered("enc_keys", "app1", "app2", 1, 256, 0.2)
    pair = {"node": "qnode1", "method": "enc_keys", "master_sae": "app1", "slave_sae": "app2"}
    assert _sample(registry, "qkdsdn_km_key_response_delay_seconds_count", **pair) == 2
    assert _sample(registry, "qkdsdn_km_key_response_delay_seconds_bucket", **pair, le="0.005") == 1
    assert _sample(registry, "qkdsdn_km_keys_delivered_total", **pair) == 5
    assert _sample(registry, "qkdsdn_km_key_bits_delivered_total", **pair) == 1280


def test_refusals_are_counted_by_a_known_reason_only() -> None:
    registry = CollectorRegistry()
    node = KmMetrics(registry).for_node("qnode1")
    node.refused("enc_keys", "app1", "app2", "admission")
    labels = {"node": "qnode1", "method": "enc_keys", "master_sae": "app1", "slave_sae": "app2"}
    assert (
        _sample(registry, "qkdsdn_km_key_requests_refused_total", **labels, reason="admission") == 1
    )
    with pytest.raises(ValueError, match="unknown refusal reason 'oops'"):
        node.refused("enc_keys", "app1", "app2", "oops")


def test_application_pairs_past_the_bound_share_the_other_series() -> None:
    registry = CollectorRegistry()
    node = KmMetrics(registry).for_node("n")
    for index in range(PAIR_LIMIT + 10):
        node.delivered("enc_keys", f"sae{index}", "peer", 1, 256, 0.001)
    text = generate_latest(registry).decode()
    series = [
        line for line in text.splitlines() if line.startswith("qkdsdn_km_keys_delivered_total")
    ]
    assert len(series) == PAIR_LIMIT + 1
    other = {"node": "n", "method": "enc_keys", "master_sae": OTHER, "slave_sae": OTHER}
    assert _sample(registry, "qkdsdn_km_keys_delivered_total", **other) == 10


def test_metrics_off_record_nothing_and_expose_nothing() -> None:
    metrics = KmMetrics.off()
    node = metrics.for_node("n")
    node.delivered("enc_keys", "a", "b", 1, 256, 0.1)
    node.refused("enc_keys", "a", "b", "no_key")
    node.relayed("a", "b", 3, 2, 0.01)
    metrics.watch_pools("n", list)
    assert metrics.registry is None and not metrics.enabled


def test_relays_record_hops_and_the_mean_hop_latency() -> None:
    registry = CollectorRegistry()
    KmMetrics(registry).for_node("a").relayed("app1", "app2", 3, 2, 0.04)
    route = {"node": "a", "master_sae": "app1", "slave_sae": "app2"}
    assert _sample(registry, "qkdsdn_km_keys_relayed_total", **route) == 3
    assert _sample(registry, "qkdsdn_km_relay_hops_sum", **route) == 2
    assert _sample(registry, "qkdsdn_km_relay_hop_seconds_sum", **route) == pytest.approx(0.02)


def test_controller_reasons_fall_into_a_fixed_set_of_classes() -> None:
    cases = {
        "": "ok",
        "hop a–b (link x) has 10 bit/s free, the request needs min_bandwidth 20": "capacity",
        "no usable path between a and c; links not active: a–b (OFF)": "no_path",
        "install failed: b: commit refused": "install_failed",
        "pre-empted by intent 7": "preempted",
        "re-routed: link a–b down": "link_down",
        "something new": "other",
    }
    for reason, expected in cases.items():
        assert reason_class(reason) == expected
        assert expected in REASON_CLASSES


def test_a_notification_is_counted_by_its_element_name() -> None:
    assert _kind('<sdqkdn_link_down xmlns="urn:x"><a/></sdqkdn_link_down>') == "sdqkdn_link_down"
    assert _kind("<ns0:alarm xmlns:ns0='urn:y'/>") == "alarm"


def test_the_lab_gives_each_process_one_metrics_port_shared_by_its_configs(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")], [("app1", "a")])
    create_lab_pki(tmp_path, ["a", "b", "c"], ["app1"])
    files = write_process_configs(plan)
    agents = [agent_config.load(files[f"agent-{n}"], env={}) for n in "abc"]
    kms = [km_config.load(files[f"km-{n}"], env={}) for n in "abc"]
    controller = controller_config.load(files["controller"], env={})
    assert len({a.metrics for a in agents}) == 1  # one agents process
    ports = {k.metrics.port for k in kms if k.metrics} | {agents[0].metrics.port}  # type: ignore[union-attr]
    assert controller.metrics is not None
    ports.add(controller.metrics.port)
    assert len(ports) == 5  # three KM processes, the agents, the controller: all distinct
    assert plan.prometheus_port == 0
    monitoring = endpoints_from_plan(plan).monitoring
    assert monitoring is not None and monitoring.prometheus == ""
    assert sorted(monitoring.metrics) == ["agents", "controller", "km-a", "km-b", "km-c"]


def test_endpoints_with_monitoring_round_trip_through_the_file(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    endpoints = endpoints_from_plan(plan)
    path = tmp_path / "endpoints.json"
    endpoints.save(path)
    assert Endpoints.load(path) == endpoints


@pytest.mark.parametrize(
    ("part", "loader"),
    [("km", km_config.load), ("agent", agent_config.load), ("controller", controller_config.load)],
)
def test_a_bad_metrics_address_is_refused_naming_the_file_and_field(
    tmp_path: Path, part: str, loader: object
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    create_lab_pki(tmp_path, ["a", "b"], [])
    files = write_process_configs(plan)
    file = files["controller" if part == "controller" else f"{part}-a"]
    data = yaml.safe_load(file.read_text())
    data["listen"]["metrics"] = "nowhere:99999"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        loader(file, env={})  # type: ignore[operator]
    assert f"{file}: listen.metrics: port '99999' is not a number from 0 to 65535" in str(
        error.value
    )


def test_the_scrape_config_has_one_target_per_process_labelled_with_its_name(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    config = scrape_config(plan, [("agents", ("a", "b"))], km_processes(plan))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert sorted(jobs) == ["agents", "controller", "km"]
    km_targets = jobs["km"]["static_configs"]
    assert [t["labels"]["process"] for t in km_targets] == ["km-a", "km-b"]
    assert km_targets[0]["targets"] == [f"127.0.0.1:{plan.metrics_ports['km-a']}"]
    assert config["global"]["scrape_interval"] == "1000ms"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check_scrape_config(path)


def test_a_malformed_scrape_config_is_refused_naming_the_file_and_each_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "often"},
                "scrape_configs": [
                    {"job_name": "km", "static_configs": [{"targets": ["127.0.0.1:notaport"]}]},
                    {"job_name": "km", "metrics_path": "metrics", "static_configs": [{}]},
                ],
            }
        )
    )
    with pytest.raises(ConfigError) as error:
        check_scrape_config(path)
    text = str(error.value)
    assert f"{path}: global.scrape_interval: 'often' is not a Prometheus duration" in text
    assert f"{path}: scrape_configs[0].static_configs[0].targets[0]: port 'notaport'" in text
    assert f"{path}: scrape_configs[1].job_name: 'km' appears twice" in text
    assert f"{path}: scrape_configs[1].metrics_path: must be a path starting with /" in text
    assert f"{path}: scrape_configs[1].static_configs[0].targets: missing" in text
    path.write_text("- not\n- a mapping\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        check_scrape_config(path)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_agent_times_how_long_a_cut_link_took_to_distil_again(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    clock = _Clock()
    site = Site(clock)
    nodes = {n: QkdNode(agent_config_of(plan, n), site, lambda xml: None) for n in "ab"}
    for node in nodes.values():
        node.start(node.initial_running())
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.watch(nodes["a"], clock)
    link = plan.links[0].qkdl_id
    clock.now += 1.0
    nodes["b"].set_link(link, up=False)  # reaches a's end too
    clock.now += 7.0
    nodes["b"].set_link(link, up=True)
    clock.now += 0.5
    assert nodes["a"].report(link).status is LinkStatus.ACTIVE
    ab = {"node": "a", "peer": "b"}
    assert _sample(registry, "qkdsdn_link_down_events_total", **ab) == 1
    assert _sample(registry, "qkdsdn_link_restoration_seconds_count", **ab) == 1
    assert _sample(registry, "qkdsdn_link_restoration_seconds_sum", **ab) == pytest.approx(7.0)
    text = generate_latest(registry).decode()
    assert f'qkdsdn_link_up{{node="a",peer="b",qkdl_id="{link}"}} 1.0' in text


class _FakeController:
    """What ControllerMetrics reads of a controller: events, install observers, state."""

    def __init__(self) -> None:
        self.intent_events: ListenerRegistry[IntentEvent] = ListenerRegistry()
        self.intent_service = SimpleNamespace(install_observers=[])
        self.installed: list[Intent] = []

    def device_status(self) -> list[tuple[str, None, bool]]:
        return [("a", None, True), ("b", None, False)]

    def intents(self) -> list[Intent]:
        return self.installed


def test_the_controller_counts_decisions_and_reads_its_state_on_its_own_loop() -> None:
    fake = _FakeController()
    request = KeyRequest("a", "b", "app1", ("app2",), QoS())

    async def scenario() -> str:
        registry = CollectorRegistry(auto_describe=True)
        began = time.monotonic()
        ControllerMetrics(registry, fake)  # type: ignore[arg-type]
        assert time.monotonic() - began < 1.0  # registering does not wait for this loop
        fake.installed.append(Intent("i1", request, IntentState.INSTALLED))
        rejected = Intent("i2", request, IntentState.REJECTED, reason="no path between a and b")
        fake.intent_events.post(IntentEvent(IntentEventType.REJECTED, rejected))
        fake.intent_events.post(IntentEvent(IntentEventType.REROUTED, fake.installed[0]))
        for observe in fake.intent_service.install_observers:
            observe(0.25, True)
        # A scrape runs on the HTTP server's thread while this loop keeps running.
        return (await asyncio.to_thread(generate_latest, registry)).decode()

    text = asyncio.run(scenario())
    assert 'qkdsdn_controller_decisions_total{outcome="REJECTED",reason="no_path"} 1.0' in text
    assert "qkdsdn_controller_reroutes_total 1.0" in text
    assert 'qkdsdn_controller_install_seconds_count{outcome="committed"} 1.0' in text
    assert "qkdsdn_controller_devices_connected 1.0" in text
    assert 'qkdsdn_controller_device_up{node="b"} 0.0' in text
    assert 'qkdsdn_controller_intents{state="INSTALLED"} 1.0' in text
