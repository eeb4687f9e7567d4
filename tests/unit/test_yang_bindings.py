"""yang/bindings: regenerates byte-identical, imports, builds a node libyang accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pyangbind.lib.pybindJSON as pybind_json
import pytest

from yang import generate
from yang.bindings.etsi_qkd_sdn_node import etsi_qkd_sdn_node
from yang.schema import Schema

COMMITTED = Path(generate.__file__).resolve().parent / "bindings"
NODE_ID = "9d4a4b8e-52f4-5a8e-9c1e-000000000002"
NEXT_HOP = "9d4a4b8e-52f4-5a8e-9c1e-000000000003"
VIRT_LINK = "5b7d1c2e-0000-5000-8000-0000000000b1"
APP = "7f3e9a10-0000-5000-8000-0000000000c1"


def test_generation_is_byte_identical_to_the_committed_bindings(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert {path.name for path in written} == {"__init__.py", generate.BINDING_FILE}
    committed = sorted(path.name for path in COMMITTED.iterdir() if path.suffix == ".py")
    assert sorted(path.name for path in tmp_path.iterdir()) == committed
    for path in written:
        assert path.read_bytes() == (COMMITTED / path.name).read_bytes(), path.name


def test_main_rejects_extra_arguments(tmp_path: Path) -> None:
    assert generate.main([str(tmp_path), "extra"]) == 2
    assert not any(tmp_path.iterdir())


def build_node() -> object:
    model = etsi_qkd_sdn_node()
    node = model.qkd_node
    node.qkdn_id = NODE_ID
    node.key_manager.etsi014_url = "https://127.0.0.1:8443"
    link = node.qkd_links.qkd_link.add(VIRT_LINK)
    link.qkdl_type = "etsi-qkd-node-types:VIRT"
    link.virt_next_hop.append(NEXT_HOP)
    link.virt_bandwidth = 4000
    app = node.qkd_applications.qkd_app.add(APP)
    app.app_type = "etsi-qkd-node-types:INTERNAL"
    app.backing_qkdl_id.append(VIRT_LINK)
    app.app_qos.min_bandwidth = 1000
    app.admission.state = "admitted"
    app.admission.path.append(NODE_ID)
    app.admission.path.append(NEXT_HOP)
    app.relay.mode = "otp"
    return model


def test_bindings_build_a_node_that_libyang_accepts() -> None:
    doc = json.loads(pybind_json.dumps(build_node(), mode="ietf"))
    node = doc["etsi-qkd-sdn-node:qkd_node"]
    assert node["qkd_links"]["qkd_link"][0]["qkdl_type"] == "etsi-qkd-node-types:VIRT"
    assert node["qkd_applications"]["qkd_app"][0]["qkdsdn-node:relay"] == {"mode": "otp"}
    assert Schema.default().validate_config_json(doc) == []


@pytest.mark.parametrize("bad", ["not-a-uuid", ""])
def test_bindings_reject_a_bad_uuid(bad: str) -> None:
    node = etsi_qkd_sdn_node().qkd_node
    with pytest.raises(ValueError):
        node.qkdn_id = bad


def test_bindings_reject_an_unknown_identity() -> None:
    link = etsi_qkd_sdn_node().qkd_node.qkd_links.qkd_link.add(VIRT_LINK)
    with pytest.raises(ValueError):
        link.qkdl_type = "etsi-qkd-node-types:WORMHOLE"
