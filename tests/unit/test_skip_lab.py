"""The lab turns SKIP on: each KM's km.yaml listens for it and endpoints.json names it."""

from __future__ import annotations

from pathlib import Path

from km import config as km_config
from lab.configs import write_process_configs
from lab.endpoints import Endpoints, endpoints_from_plan
from tests.harness.agents import make_test_plan


def test_every_km_of_a_lab_serves_skip_and_endpoints_name_it(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")], [("app1", "a"), ("app2", "b")])
    files = write_process_configs(plan)
    ports = set()
    for node in plan.nodes:
        km = km_config.load(files[f"km-{node.name}"], env={})
        assert km.listen.skip is not None
        assert km.listen.skip.port == node.km_skip_port != 0
        ports.add(node.km_skip_port)
        assert node.km_skip_port not in (
            node.km_etsi014_port,
            node.km_etsi004_port,
            node.km_relay_port,
        )
    assert len(ports) == 2
    endpoints = endpoints_from_plan(plan)
    again = Endpoints.from_dict(endpoints.to_dict())
    assert again.node("a").km.skip_url == f"https://127.0.0.1:{plan.node('a').km_skip_port}"
    assert again.app("app2").km_skip_url == again.node("b").km.skip_url


def test_a_km_yaml_without_skip_serves_none_and_a_bad_skip_address_is_named(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a"], [])
    files = write_process_configs(plan)
    text = files["km-a"].read_text()
    lines = [line for line in text.splitlines() if not line.strip().startswith("skip:")]
    files["km-a"].write_text("\n".join(lines) + "\n")
    assert km_config.load(files["km-a"], env={}).listen.skip is None
    bad = text.replace(f"127.0.0.1:{plan.node('a').km_skip_port}", "nowhere")
    files["km-a"].write_text(bad)
    try:
        km_config.load(files["km-a"], env={})
    except km_config.ConfigError as error:
        assert "listen.skip" in str(error)
    else:
        raise AssertionError("a bad listen.skip was accepted")
