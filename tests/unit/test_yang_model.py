"""yang/model.py: regenerates byte-identical, round-trips the golden trees, refuses bad values."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from yang import generate
from yang.model import (
    AdmissionState,
    ModelError,
    PhysPerfTypes,
    QkdAppTypes,
    QkdLinkTypes,
    QkdNode,
    RelayMode,
)
from yang.schema import Schema
from yang.virt_link import VirtLink, virt_links

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
NODE = "9d4a4b8e-52f4-5a8e-9c1e-000000000002"
VIRT = "5b7d1c2e-0000-5000-8000-0000000000b1"
TOP = "etsi-qkd-sdn-node:qkd_node"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_generation_is_byte_identical_to_the_committed_model(tmp_path: Path) -> None:
    written = generate.generate_model(tmp_path / "model.py")
    assert written.read_bytes() == generate.DEFAULT_MODEL.read_bytes()


@pytest.mark.parametrize("name", ["qkd-node-config.xml", "qkd-node-state.xml"])
def test_golden_xml_through_the_model_prints_the_json_libyang_prints(name: str) -> None:
    xml = golden(name)
    node = QkdNode.from_xml(xml)
    assert node.to_json() == Schema.default().xml_to_json(xml)
    assert QkdNode.from_json(node.to_json()) == node
    assert QkdNode.from_json_text(json.dumps(node.to_json())) == node


def test_the_model_reads_typed_values_and_defaults() -> None:
    node = QkdNode.from_xml(golden("qkd-node-state.xml"))
    assert node.qkdn_id == NODE
    [app] = node.qkd_applications.qkd_app
    assert app.app_type is QkdAppTypes.CLIENT and app.client_app_id == ("sae://bob",)
    assert app.admission.state is AdmissionState.ADMITTED and len(app.admission.path) == 3
    assert app.relay.mode is RelayMode.OTP and app.relay.buffer == 5
    assert app.expiration_time == "2030-01-01T00:00:00+00:00"  # libyang's canonical form
    phys, virt = node.qkd_links.qkd_link
    assert phys.qkdl_type is QkdLinkTypes.PHYS and phys.phys_channel_att == Decimal("10")
    assert phys.qkdl_performance.phys_perf[0].perf_type is PhysPerfTypes.QBER
    assert virt_links(node) == (
        VirtLink(
            VIRT,
            NODE,
            virt.qkdl_remote.qkdn_id or "",
            "9d4a4b8e-52f4-5a8e-9c1e-000000000001",
            ("9d4a4b8e-52f4-5a8e-9c1e-000000000003",),
            4000,
        ),
    )
    bare = QkdNode(qkdn_id=NODE)
    assert bare.qkdn_location_id is None and bare.qkdn_location_id_or_default == ""
    assert bare.qkd_applications.qkd_app == ()
    assert bare.to_json() == {TOP: {"qkdn_id": NODE}}


def test_a_tree_built_in_python_is_valid_for_libyang() -> None:
    node = QkdNode.from_xml(golden("qkd-node-config.xml"))
    assert Schema.default().validate_config_json(node.to_json()) == []


def _doc(**link: object) -> dict[str, object]:
    entry = {"qkdl_id": VIRT, **link}
    return {TOP: {"qkdn_id": NODE, "qkd_links": {"qkd_link": [entry]}}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(qkdl_type="etsi-qkd-node-types:WARP"), "qkdl_type: unknown value"),
        (_doc(qkdl_type="VIRT"), "qkdl_type: unknown value 'VIRT'"),
        (_doc(virt_bandwidth="4000"), "virt_bandwidth: expected an integer, not the string"),
        (_doc(virt_bandwidth=-1), "virt_bandwidth: -1 is out of range 0..4294967295"),
        (_doc(qkdl_enable="true"), "qkdl_enable: expected true or false"),
        (_doc(virt_next_hop="not-a-uuid"), "virt_next_hop: expected an array"),
        (_doc(virt_next_hop=["not-a-uuid"]), "virt_next_hop: 'not-a-uuid' does not match"),
        (_doc(phys_channel_att="1.0005"), "phys_channel_att: '1.0005' has more than 3 fraction"),
        (_doc(warp_factor=9), "unknown member 'warp_factor'"),
        (
            {TOP: {"qkdn_id": NODE, "qkd_links": {"qkd_link": [{"qkdl_id": VIRT}] * 2}}},
            "two entries",
        ),
        ({TOP: {}}, "no qkdn_id"),
        ({"qkd_node": {"qkdn_id": NODE}}, "unknown member 'qkd_node'"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_leaf(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message) as raised:
        QkdNode.from_json(doc)
    assert raised.value.path.startswith("/")


def test_a_wrong_identity_in_xml_is_refused_with_its_namespace() -> None:
    xml = golden("qkd-node-config.xml")
    with pytest.raises(ModelError, match=r"qkd_link\[1\]/qkdl_type: unknown identity 't:WARP'"):
        QkdNode.from_xml(xml.replace("t:VIRT", "t:WARP"))
    other = xml.replace('xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types"', 'xmlns:t="urn:other"')
    with pytest.raises(ModelError, match="namespace 'urn:other'"):
        QkdNode.from_xml(other)
    with pytest.raises(ModelError, match="app_priority: 'two' is not an integer"):
        QkdNode.from_xml(xml.replace("<app_priority>2<", "<app_priority>two<"))


def test_unknown_xml_elements_are_refused_unless_ignored() -> None:
    xml = golden("qkd-node-config.xml").replace(
        "<qkdn_version>", "<warp xmlns='urn:x'>9</warp><qkdn_version>"
    )
    with pytest.raises(ModelError, match="/qkd_node/warp: unknown element"):
        QkdNode.from_xml(xml)
    assert QkdNode.from_xml(xml, ignore_unknown=True).qkdn_version == "0.1.0"


def test_xml_is_found_inside_a_netconf_reply_and_bad_xml_is_refused() -> None:
    reply = (
        '<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data>'
        f"{golden('qkd-node-state.xml')}</data></rpc-reply>"
    )
    assert QkdNode.from_xml(reply).qkdn_id == NODE
    with pytest.raises(ModelError, match="not XML"):
        QkdNode.from_xml("<qkd_node")
    with pytest.raises(ModelError, match="no qkd_node"):
        QkdNode.from_xml("<data/>")
    with pytest.raises(ModelError, match="not JSON"):
        QkdNode.from_json_text("{")


def test_a_bad_id_is_refused_after_good_ones_were_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from yang import model, model_support

    monkeypatch.setattr(model_support, "SEEN_MAX", 2)
    model._P0_SEEN.clear()
    doc = QkdNode(qkdn_id=NODE).to_json()
    for index in range(3):  # the third id finds the memory full: it starts again
        doc[TOP]["qkdn_id"] = NODE[:-1] + str(index)
        assert QkdNode.from_json(doc).qkdn_id == NODE[:-1] + str(index)
        assert len(model._P0_SEEN) <= 2
    assert NODE[:-1] + "2" in model._P0_SEEN
    doc[TOP]["qkdn_id"] = NODE[:-1] + "x"
    with pytest.raises(ModelError, match=r"qkdn_id.*does not match"):
        QkdNode.from_json(doc)
    assert NODE[:-1] + "x" not in model._P0_SEEN


def test_a_remembered_decimal_is_still_checked_for_its_digits() -> None:
    from yang import model_support

    assert model_support.decimal_json("1.5", "/x", "att", 3) == Decimal("1.5")
    assert model_support.decimal_json("1.5", "/x", "att", 3) == Decimal("1.5")
    with pytest.raises(ModelError, match="more than 0 fraction digits"):
        model_support.decimal_json("1.5", "/x", "att", 0)


def test_a_parse_reusing_an_earlier_tree_equals_the_full_parse_and_shares_what_did_not_change() -> (
    None
):
    earlier_doc = QkdNode.from_xml(golden("qkd-node-state.xml")).to_json()
    earlier = QkdNode.from_json(earlier_doc)
    phys, virt = earlier.qkd_links.qkd_link
    changed = json.loads(json.dumps(earlier_doc))
    links = changed[TOP]["qkd_links"]["qkd_link"]
    links[1]["virt_bandwidth"] = 123  # the VIRT link changes
    added = json.loads(json.dumps(links[1]))
    added["qkdl_id"] = "5b7d1c2e-0000-5000-8000-0000000000b2"
    links.insert(0, added)  # a new entry before the others: matched by key, not place
    reused = QkdNode.from_json(changed, reuse=(earlier_doc, earlier))
    assert reused == QkdNode.from_json(changed)
    new, same_phys, new_virt = reused.qkd_links.qkd_link
    assert new.qkdl_id.endswith("b2")
    assert same_phys is phys and new_virt is not virt and new_virt.virt_bandwidth == 123
    assert reused.qkd_interfaces is earlier.qkd_interfaces  # an equal container is taken over
    removed = json.loads(json.dumps(earlier_doc))
    del removed[TOP]["qkd_links"]["qkd_link"][0]
    assert QkdNode.from_json(removed, reuse=(earlier_doc, earlier)) == QkdNode.from_json(removed)


def test_a_parse_reusing_an_earlier_tree_refuses_a_wrong_value_as_the_full_parse_does() -> None:
    earlier_doc = QkdNode.from_xml(golden("qkd-node-state.xml")).to_json()
    earlier = QkdNode.from_json(earlier_doc)
    wrong = json.loads(json.dumps(earlier_doc))
    wrong[TOP]["qkd_links"]["qkd_link"][1]["virt_bandwidth"] = "fast"
    with pytest.raises(ModelError) as full:
        QkdNode.from_json(wrong)
    with pytest.raises(ModelError) as reusing:
        QkdNode.from_json(wrong, reuse=(earlier_doc, earlier))
    assert str(reusing.value) == str(full.value)
