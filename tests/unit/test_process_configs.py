"""The per-process configuration files: every field checked, every error named, env overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents import config as agent_config
from common.config import Address, ConfigError, parse_address
from common.ids import link_uuid, node_uuid
from controller import config as controller_config
from km import config as km_config


def _files(tmp_path: Path) -> None:
    for name in ("password", "client.pub", "host_key", "seed", "cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / "config" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def agent_data() -> dict[str, Any]:
    return {
        "node": "qnode1",
        "listen": {"netconf": "127.0.0.1:8300", "grpc": "[::1]:8301"},
        "netconf": {
            "username": "qkdsdn",
            "password_file": "../password",
            "authorized_keys_file": "../client.pub",
            "host_key": "../host_key",
        },
        "data_dir": "../agents/qnode1",
        "key_manager": {"etsi014_url": "https://127.0.0.1:8302", "relay": "127.0.0.1:8304"},
        "links": [
            {
                "local_qkdi_id": 1,
                "peer": {"node": "qnode2", "qkdi_id": 1},
                "length_km": 20.0,
                "preset": "commercial",
                "seed_file": "../seed",
            }
        ],
    }


def km_data() -> dict[str, Any]:
    return {
        "node": "qnode1",
        "listen": {"etsi014": "0.0.0.0:8302", "etsi004": "[::]:8303", "relay": "10.0.0.1:8304"},
        "agent": "127.0.0.1:8301",
        "peers": [{"node": "qnode2", "relay": "10.0.0.2:8404"}],
        "tls": {"cert": "../cert.pem", "key": "../key.pem", "ca": "../ca.pem"},
        "data_dir": "../km/qnode1",
        "applications": {"app1": "qnode1", "app2": "qnode2", "app3": "qnode3"},
    }


def controller_data() -> dict[str, Any]:
    return {
        "listen": {"api": "127.0.0.1:8500"},
        "nodes": [
            {"name": "qnode1", "netconf": "127.0.0.1:8300"},
            {"name": "qnode2", "netconf": "[fd00::2]:830"},
        ],
        "netconf": {"username": "qkdsdn", "password_file": "../password"},
        "forced_paths": {"app1>app2": ["qnode1", "qnode2"]},
    }


def test_a_good_agent_file_loads_with_ids_derived_and_paths_resolved(tmp_path: Path) -> None:
    _files(tmp_path)
    config = agent_config.load(_write(tmp_path, "agent.yaml", agent_data()), env={})
    assert config.qkdn_id == node_uuid("qnode1")
    assert config.listen.grpc == Address("::1", 8301)
    assert str(config.listen.grpc) == "[::1]:8301"
    assert config.data_dir == (tmp_path / "agents" / "qnode1").resolve()
    [link] = config.links
    assert link.qkdl_id == link_uuid("qnode1", "qnode2")
    assert link.peer.qkdn_id == node_uuid("qnode2")
    assert link.role == "transmitter"
    assert link.seed_file == (tmp_path / "seed").resolve()
    assert config.tls is None and config.durable is True


def test_a_good_km_file_loads_wildcards_and_peers(tmp_path: Path) -> None:
    _files(tmp_path)
    config = km_config.load(_write(tmp_path, "km.yaml", km_data()), env={})
    assert config.listen.etsi014.is_wildcard and config.listen.etsi004.is_wildcard
    assert config.listen.etsi004.reachable == Address("::1", 8303)
    assert config.peer("qnode2").qkdl_id == link_uuid("qnode1", "qnode2")
    assert config.qkdn_id_of("qnode2") == node_uuid("qnode2")
    assert config.name_of(node_uuid("qnode2")) == "qnode2"
    assert config.qkdn_id_of("qnode3") == node_uuid("qnode3")  # app3's node, id derived
    with pytest.raises(KeyError):
        config.qkdn_id_of("qnode9")
    assert config.settings.relay_mode == "aes-gcm"
    assert config.key_store_file == (tmp_path / "km" / "qnode1" / "keys.sqlite").resolve()


def test_a_good_controller_file_loads_ipv6_nodes_and_forced_paths(tmp_path: Path) -> None:
    _files(tmp_path)
    config = controller_config.load(_write(tmp_path, "c.yaml", controller_data()), env={})
    assert config.nodes[1].netconf == Address("fd00::2", 830)
    assert config.forced_paths == {"app1>app2": ("qnode1", "qnode2")}
    assert config.api_url == "http://127.0.0.1:8500"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:830", Address("127.0.0.1", 830)),
        ("0.0.0.0:0", Address("0.0.0.0", 0)),
        ("[::1]:830", Address("::1", 830)),
        ("[::]:7000", Address("::", 7000)),
        ("km-qnode1.qkd.svc:8304", Address("km-qnode1.qkd.svc", 8304)),
    ],
)
def test_addresses_parse_ipv4_ipv6_wildcards_and_names(text: str, expected: Address) -> None:
    assert parse_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "::1:830",
        "[::1]830",
        "[fe80::zz]:1",
        "1.2.3.256:80",
        "h:70000",
        "h:x",
        ":80",
        "a_b:1",
    ],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_every_bad_agent_field_is_named_in_one_error(tmp_path: Path) -> None:
    _files(tmp_path)
    data = agent_data()
    data["listen"]["netconf"] = "localhost"  # no port
    data["netconf"]["host_key"] = "../missing_key"
    data["perf_interval_s"] = -1
    data["links"][0]["preset"] = "warp-drive"
    data["links"][0]["peer"]["qkdi_id"] = "one"
    data["colour"] = "blue"
    path = _write(tmp_path, "agent.yaml", data)
    with pytest.raises(ConfigError) as caught:
        agent_config.load(path, env={})
    errors = caught.value.errors
    assert len(errors) == 6, errors
    for field in (
        "listen.netconf:",
        "netconf.host_key: no such file",
        "perf_interval_s: must be > 0",
        "links[0].preset: 'warp-drive' is not one of",
        "links[0].peer.qkdi_id: must be an integer",
        "colour: unknown field",
    ):
        assert any(error.startswith(f"{path}: {field}") for error in errors), (field, errors)


def test_every_bad_km_field_is_named_in_one_error(tmp_path: Path) -> None:
    _files(tmp_path)
    data = km_data()
    del data["tls"]
    data["agent"] = "[::1:8301"
    data["peers"].append({"node": "qnode2", "relay": "10.0.0.2:8404"})
    data["settings"] = {"relay_mode": "rot13", "key_size_bits": 100, "e2e_buffer": -1}
    data["nodes"] = {"qnode3": "not-a-uuid"}
    path = _write(tmp_path, "km.yaml", data)
    with pytest.raises(ConfigError) as caught:
        km_config.load(path, env={})
    text = str(caught.value)
    for field in (
        "tls: missing",
        "agent:",
        "peers[1].node: qnode2 appears twice",
        "settings.relay_mode: 'rot13'",
        "settings.key_size_bits: must be a multiple of 8",
        "settings.e2e_buffer: must be at least 0",
        "nodes.qnode3: bad value",
    ):
        assert f"{path}: {field}" in text, field


def test_every_bad_controller_field_is_named_in_one_error(tmp_path: Path) -> None:
    _files(tmp_path)
    data = controller_data()
    data["policy"] = "shortest"
    data["forced_paths"] = {"app1>app2": ["qnode1", "qnode9"]}
    data["nodes"][1]["netconf"] = "[fd00::2]"
    data["netconf"] = {"username": "qkdsdn"}
    path = _write(tmp_path, "c.yaml", data)
    with pytest.raises(ConfigError) as caught:
        controller_config.load(path, env={})
    text = str(caught.value)
    for field in (
        "policy: 'shortest' is not one of",
        "forced_paths.app1>app2: unknown node(s) qnode9",
        "nodes[1].netconf:",
        "netconf: give password_file or client_key",
    ):
        assert f"{path}: {field}" in text, field


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "km.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        km_config.load(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        km_config.load(tmp_path / "absent.yaml", env={})


def test_environment_overrides_nested_fields_as_yaml_values(tmp_path: Path) -> None:
    _files(tmp_path)
    path = _write(tmp_path, "km.yaml", km_data())
    env = {
        "QKDSDN_LISTEN__RELAY": "[::]:7000",
        "QKDSDN_SETTINGS__E2E_BUFFER": "5",
        "QKDSDN_PEERS__0__RELAY": "[fd00::2]:7000",
        "QKDSDN_TRACE_FILE": "/tmp/trace.jsonl",  # not a km field: left to its own reader
        "HOME": "/root",
    }
    config = km_config.load(path, env=env)
    assert config.listen.relay == Address("::", 7000)
    assert config.settings.e2e_buffer == 5
    assert config.peers[0].relay == Address("fd00::2", 7000)


def test_a_bad_environment_override_is_named_like_a_bad_field(tmp_path: Path) -> None:
    _files(tmp_path)
    path = _write(tmp_path, "agent.yaml", agent_data())
    with pytest.raises(ConfigError, match=r"listen\.grpc: port '99999'"):
        agent_config.load(path, env={"QKDSDN_LISTEN__GRPC": "127.0.0.1:99999"})


def test_controller_steering_defaults_to_static_and_reads_data_driven_settings(
    tmp_path: Path,
) -> None:
    _files(tmp_path)
    config = controller_config.load(_write(tmp_path, "c.yaml", controller_data()), env={})
    assert config.steering.mode == "static" and not config.steering.data_driven
    data = dict(controller_data(), steering={"hold_s": 3, "priorities": {"app1": 10}})
    env = {"QKDSDN_STEERING__MODE": "data-driven"}
    config = controller_config.load(_write(tmp_path, "c.yaml", data), env=env)
    assert config.steering.data_driven
    assert config.steering.settings.hold_s == 3.0
    assert config.steering.settings.priorities == {"app1": 10}


def test_bad_controller_steering_settings_are_each_named(tmp_path: Path) -> None:
    _files(tmp_path)
    data = dict(
        controller_data(),
        steering={"mode": "smart", "priorities": {"app1": "high"}, "drop_ratio": 0.9},
    )
    with pytest.raises(ConfigError) as error:
        controller_config.load(_write(tmp_path, "c.yaml", data), env={})
    text = str(error.value)
    assert "steering.mode" in text and "'smart'" in text
    assert "steering.priorities.app1" in text
    assert "drop_ratio" in text


def test_controller_buffers_default_to_fixed_and_read_adaptive_settings(tmp_path: Path) -> None:
    _files(tmp_path)
    config = controller_config.load(_write(tmp_path, "c.yaml", controller_data()), env={})
    assert config.buffers.mode == "fixed" and not config.buffers.adaptive
    data = dict(controller_data(), buffers={"max": 32, "horizon_s": 2, "key_bits": 512})
    env = {"QKDSDN_BUFFERS__MODE": "adaptive"}
    config = controller_config.load(_write(tmp_path, "c.yaml", data), env=env)
    assert config.buffers.adaptive
    settings = config.buffers.settings
    assert (settings.minimum, settings.maximum, settings.horizon_s, settings.key_bits) == (
        1,
        32,
        2.0,
        512,
    )


def test_bad_controller_buffer_settings_are_each_named(tmp_path: Path) -> None:
    _files(tmp_path)
    for buffers, named in (
        ({"mode": "elastic"}, "buffers.mode"),
        ({"min": 10, "max": 2}, "minimum (10) <= maximum (2)"),
        ({"horizon_s": 0}, "buffers.horizon_s"),
        ({"size": 3}, "size"),
    ):
        data = dict(controller_data(), buffers=buffers)
        with pytest.raises(ConfigError, match=re.escape(named)):
            controller_config.load(_write(tmp_path, "c.yaml", data), env={})
