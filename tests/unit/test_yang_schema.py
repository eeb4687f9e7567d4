"""yang.schema: validation, conversion and schema queries against the real models (libyang)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yang.schema import (
    InvalidDataError,
    NodeInfo,
    Schema,
    SchemaError,
    ValidationError,
    _location_path,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CONFIG_XML = (GOLDEN / "qkd-node-config.xml").read_text(encoding="utf-8")
STATE_XML = (GOLDEN / "qkd-node-state.xml").read_text(encoding="utf-8")

NODE_NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
QKDSDN_NS = "urn:qkdsdn:yang:qkdsdn-node"
NODE_ID = "9d4a4b8e-52f4-5a8e-9c1e-000000000002"
PHYS_LINK = "5b7d1c2e-0000-5000-8000-0000000000a1"
VIRT_LINK = "5b7d1c2e-0000-5000-8000-0000000000b1"
PHYS_TYPE = "<qkdl_type>t:PHYS</qkdl_type>"
VIRT_TYPE = "<qkdl_type>t:VIRT</qkdl_type>"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.default()


def only_error(errors: list[ValidationError]) -> ValidationError:
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ('Schema location "/m:a/b".', "/m:a/b"),
        ("Data location \"/m:a/l[k='1']\", line number 3.", "/m:a/l[k='1']"),
        ('Schema location "/m:a/b", data location "/m:a", line number 2.', "/m:a"),
        ("Line number 1.", "/"),
        (None, "/"),
    ],
)
def test_libyang_locations_become_data_paths(location: str | None, path: str) -> None:
    assert _location_path(location) == path


def test_default_is_shared() -> None:
    assert Schema.default() is Schema.default()


def test_full_config_is_valid(schema: Schema) -> None:
    assert schema.validate_config_xml(CONFIG_XML) == []


def test_full_config_with_state_is_valid_data(schema: Schema) -> None:
    assert schema.validate_data_xml(STATE_XML) == []


def test_state_nodes_are_not_config(schema: Schema) -> None:
    error = only_error(schema.validate_config_xml(STATE_XML))
    assert error.path == "/etsi-qkd-sdn-node:qkd_node/qkdn_status"
    assert "state" in error.message


def test_phys_perf_is_accepted_on_a_phys_link(schema: Schema) -> None:
    # The published model compares qkdl_type with bare 'PHYS': libyang rejected every entry.
    assert "<phys_perf>" in STATE_XML
    assert schema.validate_data_xml(STATE_XML) == []


def test_phys_perf_is_rejected_on_a_virt_link(schema: Schema) -> None:
    xml = STATE_XML.replace(PHYS_TYPE, VIRT_TYPE)
    xml = xml.replace("<phys_channel_att>10.000</phys_channel_att>", "")
    xml = xml.replace("<phys_wavelength>1550</phys_wavelength>", "")
    xml = xml.replace("<phys_qkd_role>t:TRANSMITTER</phys_qkd_role>", "")
    error = only_error(schema.validate_data_xml(xml))
    assert "phys_perf" in error.path
    assert "When condition" in error.message


@pytest.mark.parametrize(
    "leaf",
    [
        "<virt_bandwidth>5</virt_bandwidth>",
        f"<virt_prev_hop>{NODE_ID}</virt_prev_hop>",
        f"<virt_next_hop>{NODE_ID}</virt_next_hop>",
    ],
)
def test_virt_only_leaf_on_a_phys_link_is_rejected(schema: Schema, leaf: str) -> None:
    xml = CONFIG_XML.replace(PHYS_TYPE, PHYS_TYPE + leaf)
    error = only_error(schema.validate_config_xml(xml))
    name = leaf[1 : leaf.index(">")]
    assert f"/{name}" in error.path
    assert f"qkd_link[qkdl_id='{PHYS_LINK}']" in error.path
    assert "etsi-qkd-node-types:VIRT" in error.message


def test_phys_only_leaf_on_a_virt_link_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(VIRT_TYPE, VIRT_TYPE + "<phys_wavelength>3</phys_wavelength>")
    error = only_error(schema.validate_config_xml(xml))
    assert error.path.endswith(f"qkd_link[qkdl_id='{VIRT_LINK}']/phys_wavelength")


def test_bad_uuid_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(f"<qkdn_id>{NODE_ID}</qkdn_id>", "<qkdn_id>node-2</qkdn_id>", 1)
    error = only_error(schema.validate_config_xml(xml))
    assert error.path == "/etsi-qkd-sdn-node:qkd_node/qkdn_id"
    assert "node-2" in error.message


def test_unknown_identity_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(PHYS_TYPE, "<qkdl_type>t:WORMHOLE</qkdl_type>")
    error = only_error(schema.validate_config_xml(xml))
    assert error.path.endswith("/qkdl_type")
    assert "WORMHOLE" in error.message


def test_identity_of_another_base_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(PHYS_TYPE, "<qkdl_type>t:TRANSMITTER</qkdl_type>")
    error = only_error(schema.validate_config_xml(xml))
    assert error.path.endswith("/qkdl_type")


def test_missing_qkdn_id_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(f"<qkdn_id>{NODE_ID}</qkdn_id>", "", 1)
    error = only_error(schema.validate_config_xml(xml))
    assert error.path == "/etsi-qkd-sdn-node:qkd_node/qkdn_id"
    assert "Mandatory" in error.message


def test_unknown_element_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace("<qkdn_version>", "<qkdn_colour>blue</qkdn_colour><qkdn_version>")
    error = only_error(schema.validate_config_xml(xml))
    assert "qkdn_colour" in error.message
    assert error.path == "/etsi-qkd-sdn-node:qkd_node"


def test_wrong_namespace_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(f'<qkd_node xmlns="{NODE_NS}"', '<qkd_node xmlns="urn:etsi:wrong"')
    error = only_error(schema.validate_config_xml(xml))
    assert error.path == "/qkd_node"
    assert "urn:etsi:wrong" in error.message


def test_augment_in_the_etsi_namespace_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace(f'<key_manager xmlns="{QKDSDN_NS}">', "<key_manager>")
    error = only_error(schema.validate_config_xml(xml))
    assert "key_manager" in error.message


def test_bad_enum_of_the_augment_is_rejected(schema: Schema) -> None:
    xml = CONFIG_XML.replace("<mode>otp</mode>", "<mode>rot13</mode>")
    error = only_error(schema.validate_config_xml(xml))
    assert error.path.endswith("/qkdsdn-node:relay/mode")


def test_wavelength_patterns(schema: Schema) -> None:
    for bad in ("0155", "12345", "15a"):
        xml = CONFIG_XML.replace("<phys_wavelength>1550<", f"<phys_wavelength>{bad}<")
        assert only_error(schema.validate_config_xml(xml)).path.endswith("/phys_wavelength")
    for bad in ("1,,2", "-3", "1-", "01"):
        xml = CONFIG_XML.replace("<wavelength_range>1,12-20<", f"<wavelength_range>{bad}<")
        error = only_error(schema.validate_config_xml(xml))
        assert error.path.endswith("/wavelength_range")


@pytest.mark.parametrize("wrapper", ["config", "data"])
def test_envelopes_of_any_namespace_are_unwrapped(schema: Schema, wrapper: str) -> None:
    # The identityref prefix is declared on the envelope only: it must survive unwrapping.
    inner = CONFIG_XML.replace(f' xmlns:t="{TYPES_NS}"', "")
    xml = (
        f'<{wrapper} xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" xmlns:t="{TYPES_NS}">'
        f"{inner}</{wrapper}>"
    )
    assert schema.validate_config_xml(xml) == []
    assert schema.xml_to_json(xml) == schema.xml_to_json(CONFIG_XML)


def test_empty_envelope_is_an_empty_valid_tree(schema: Schema) -> None:
    assert schema.validate_config_xml("<config/>") == []
    assert schema.xml_to_json("<data xmlns='urn:x'/>") == {}


def test_malformed_xml_gives_errors_not_exceptions(schema: Schema) -> None:
    error = only_error(schema.validate_config_xml("<qkd_node"))
    assert error.path == "/"
    assert "malformed XML" in error.message


def test_entities_are_not_expanded(schema: Schema) -> None:
    xml = (
        '<!DOCTYPE q [<!ENTITY big "xxxxxxxxxx">]>'
        f'<qkd_node xmlns="{NODE_NS}"><qkdn_version>&big;</qkdn_version></qkd_node>'
    )
    assert schema.validate_config_xml(xml) != []


def test_validate_config_json(schema: Schema) -> None:
    doc = schema.xml_to_json(CONFIG_XML)
    assert schema.validate_config_json(doc) == []
    doc["etsi-qkd-sdn-node:qkd_node"]["qkdn_id"] = "nope"
    error = only_error(schema.validate_config_json(doc))
    assert error.path == "/etsi-qkd-sdn-node:qkd_node/qkdn_id"


def test_validate_config_json_rejects_non_json(schema: Schema) -> None:
    assert schema.validate_config_json({"x": object()}) != []
    assert schema.validate_config_json({"etsi-qkd-sdn-node:nothing": 1}) != []


def test_json_identityrefs_use_the_module_name(schema: Schema) -> None:
    doc = schema.xml_to_json(CONFIG_XML)
    links = doc["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
    assert {link["qkdl_type"] for link in links} == {
        "etsi-qkd-node-types:PHYS",
        "etsi-qkd-node-types:VIRT",
    }
    app = doc["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"][0]
    assert app["qkdsdn-node:admission"]["state"] == "admitted"
    assert app["qkdsdn-node:admission"]["path"][0].endswith("000000000001")


def test_xml_identityrefs_declare_their_prefix(schema: Schema) -> None:
    xml = schema.json_to_xml(schema.xml_to_json(CONFIG_XML))
    assert f'<qkdl_type xmlns:etsi-qkdn-types="{TYPES_NS}">etsi-qkdn-types:VIRT</qkdl_type>' in xml


def test_round_trip_xml_json_xml_preserves_data(schema: Schema) -> None:
    for xml, config_only in ((CONFIG_XML, True), (STATE_XML, False)):
        doc = schema.xml_to_json(xml, config_only=config_only)
        back = schema.json_to_xml(doc)
        assert schema.xml_to_json(back, config_only=config_only) == doc
        assert schema.canonical_xml(back) == schema.canonical_xml(xml)
        assert json.dumps(doc).count("000000000001") == xml.count("000000000001")


def test_ordered_by_user_path_keeps_its_order(schema: Schema) -> None:
    xml = CONFIG_XML.replace("000000000001</path>", "000000000009</path>")
    doc = schema.xml_to_json(xml)
    path = doc["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"][0][
        "qkdsdn-node:admission"
    ]["path"]
    assert [uuid[-1] for uuid in path] == ["9", "2", "3"]


def test_config_only_conversion_rejects_state(schema: Schema) -> None:
    with pytest.raises(InvalidDataError) as raised:
        schema.xml_to_json(STATE_XML, config_only=True)
    assert raised.value.errors[0].path.endswith("qkdn_status")
    assert isinstance(raised.value, SchemaError)


def test_conversion_accepts_partial_trees(schema: Schema) -> None:
    # An edit-config payload: no qkdn_id (mandatory), still converts.
    xml = f'<qkd_node xmlns="{NODE_NS}"><qkdn_version>2</qkdn_version></qkd_node>'
    assert schema.xml_to_json(xml) == {"etsi-qkd-sdn-node:qkd_node": {"qkdn_version": "2"}}


def test_conversion_rejects_bad_values(schema: Schema) -> None:
    with pytest.raises(InvalidDataError) as raised:
        schema.json_to_xml({"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": "x"}})
    assert raised.value.errors[0].path.endswith("qkdn_id")
    with pytest.raises(InvalidDataError):
        schema.xml_to_json("not xml")


def test_canonical_xml_orders_by_schema_and_adds_no_defaults(schema: Schema) -> None:
    xml = (
        f'<qkd_node xmlns="{NODE_NS}"><qkdn_version>2</qkdn_version>'
        f"<qkdn_id>{NODE_ID}</qkdn_id></qkd_node>"
    )
    canonical = schema.canonical_xml(xml)
    assert canonical.index("<qkdn_id>") < canonical.index("<qkdn_version>")
    assert "qkdn_location_id" not in canonical
    assert "qkdn_capabilities" not in canonical
    assert schema.canonical_xml(canonical) == canonical


def test_node_info(schema: Schema) -> None:
    assert schema.node_info(("qkd_node",)) == NodeInfo(
        "container", (), True, NODE_NS, "etsi-qkd-sdn-node"
    )
    assert schema.node_info(("qkd_node", "qkd_links", "qkd_link")) == NodeInfo(
        "list", ("qkdl_id",), True, NODE_NS, "etsi-qkd-sdn-node"
    )
    virt_next_hop = schema.node_info(("qkd_node", "qkd_links", "qkd_link", "virt_next_hop"))
    assert virt_next_hop is not None and virt_next_hop.kind == "leaf-list"
    skr = schema.node_info(("qkd_node", "qkd_links", "qkd_link", "qkdl_performance", "skr"))
    assert skr is not None and skr.config is False
    path = ("qkd_node", "qkd_applications", "qkd_app", "admission", "path")
    assert schema.node_info(path) == NodeInfo("leaf-list", (), True, QKDSDN_NS, "qkdsdn-node")
    assert schema.node_info(("qkd_node", "key_manager", "relay_address")) is not None
    assert schema.node_info(("qkd_node", "nothing")) is None
    assert schema.node_info(("sdqkdn_link_down",)) is None
    assert schema.node_info(()) is None


def test_module_texts_and_capabilities(schema: Schema) -> None:
    texts = schema.module_texts()
    assert set(texts) == {
        ("etsi-qkd-sdn-node", "2022-01-30"),
        ("etsi-qkd-node-types", "2022-01-30"),
        ("qkdsdn-node", "2026-12-03"),
        ("ietf-yang-types", "2013-07-15"),
        ("ietf-inet-types", "2013-07-15"),
        ("ietf-netconf-acm", "2018-02-14"),
        ("ietf-subscribed-notifications", "2019-09-09"),
        ("ietf-yang-push", "2019-09-09"),
        ("ietf-datastores", "2018-02-14"),
        ("ietf-yang-patch", "2017-02-22"),
    }
    assert texts[("etsi-qkd-sdn-node", "2022-01-30")].startswith("module etsi-qkd-sdn-node {")
    capabilities = schema.capabilities()
    assert (
        "urn:etsi:qkd:yang:etsi-qkd-node?module=etsi-qkd-sdn-node&revision=2022-01-30"
        in capabilities
    )
    assert "urn:qkdsdn:yang:qkdsdn-node?module=qkdsdn-node&revision=2026-12-03" in capabilities
    assert len(capabilities) == len(texts)
    # The subscription modules advertise exactly the features the agents implement.
    assert (
        "urn:ietf:params:xml:ns:yang:ietf-yang-push?module=ietf-yang-push&revision=2019-09-09"
        "&features=on-change" in capabilities
    )
    assert (
        "urn:ietf:params:xml:ns:yang:ietf-subscribed-notifications"
        "?module=ietf-subscribed-notifications&revision=2019-09-09"
        "&features=encode-xml,subtree,xpath" in capabilities
    )


def test_missing_models_raise_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError):
        Schema(tmp_path)


APP_NEW = f"""<sdqkdn_application_new xmlns="{NODE_NS}" xmlns:t="{TYPES_NS}">
  <qkd_application>
    <app_type>t:CLIENT</app_type>
    <server_app_id>sae://alice</server_app_id>
    <client_app_id>sae://bob</client_app_id>
    <local_qkdn_id>{NODE_ID}</local_qkdn_id>
    <app_qos><min_bandwidth>1000</min_bandwidth></app_qos>
    <remote_qkdn_id xmlns="{QKDSDN_NS}">9d4a4b8e-52f4-5a8e-9c1e-000000000003</remote_qkdn_id>
  </qkd_application>
</sdqkdn_application_new>"""


def test_notification_with_the_augment_is_valid(schema: Schema) -> None:
    assert schema.validate_notification_xml(APP_NEW) == []


def test_netconf_notification_envelope(schema: Schema) -> None:
    xml = (
        '<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">'
        f"<eventTime>2026-11-26T10:00:00Z</eventTime>{APP_NEW}</notification>"
    )
    assert schema.validate_notification_xml(xml) == []


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("<app_type>t:CLIENT", "<app_type>t:PHYS", "app_type"),
        ("<local_qkdn_id>", "<app_id>x</app_id><local_qkdn_id>", "qkd_application"),
        (f'xmlns="{QKDSDN_NS}">9d4a', f'xmlns="{QKDSDN_NS}">zz', "remote_qkdn_id"),
    ],
)
def test_bad_notifications_are_rejected(schema: Schema, old: str, new: str, where: str) -> None:
    error = only_error(schema.validate_notification_xml(APP_NEW.replace(old, new)))
    assert where in str(error)


def test_every_notification_of_the_model_validates(schema: Schema) -> None:
    link = f"<qkd_link><qkdl_id>{PHYS_LINK}</qkdl_id>"
    samples = [
        f"<sdqkdn_link_down>{link}<reason>fibre cut</reason></qkd_link></sdqkdn_link_down>",
        f"<sdqkdn_link_perf_update>{link}<performance><skr>10</skr><phys_perf>"
        "<perf_type>t:QBER</perf_type><value>0.05</value></phys_perf></performance>"
        "</qkd_link></sdqkdn_link_perf_update>",
        f"<sdqkdn_link_overloaded>{link}<performance><eskr>1</eskr></performance>"
        "</qkd_link></sdqkdn_link_overloaded>",
        "<sdqkdn_interface_down><qkd_interface><qkdi_id>1</qkdi_id><reason>r</reason>"
        "</qkd_interface></sdqkdn_interface_down>",
        "<sdqkdn_interface_out><qkd_interface><qkdi_id>1</qkdi_id></qkd_interface>"
        "</sdqkdn_interface_out>",
        "<sdqkdn_interface_new><qkd_interface><qkdi_id>1</qkdi_id><qkdi_type>t:CV-QKD"
        "</qkdi_type></qkd_interface></sdqkdn_interface_new>",
        "<sdqkdn_application_disconnected><qkd_application>"
        f"<app_id>{NODE_ID}</app_id></qkd_application></sdqkdn_application_disconnected>",
        "<sdqkdn_application_qos_update><qkd_application>"
        f"<app_id>{NODE_ID}</app_id><app_qos><ttl>5</ttl></app_qos><app_priority>1"
        "</app_priority></qkd_application></sdqkdn_application_qos_update>",
        f"<alarm><link><qkdl_id>{PHYS_LINK}</qkdl_id><qkdl_status>t:OFF</qkdl_status>"
        "<message>down</message><severity>t:MAJOR</severity></link></alarm>",
        "<event><application><app_status>t:ZOMBIE</app_status><severity>t:MINOR</severity>"
        "</application><interface><qkdi_status>t:FAILED</qkdi_status></interface></event>",
    ]
    for sample in samples:
        name = sample[1 : sample.index(">")]
        xml = sample.replace(f"<{name}>", f'<{name} xmlns="{NODE_NS}" xmlns:t="{TYPES_NS}">', 1)
        assert schema.validate_notification_xml(xml) == [], name


def test_data_tree_is_not_a_notification(schema: Schema) -> None:
    assert schema.validate_notification_xml(CONFIG_XML) != []


xmlish = st.text(
    alphabet=st.sampled_from(list("<>/=\"' :qkd_nodexmlns&;![]-?\x00é")) | st.characters(),
    max_size=200,
)
fragments = st.lists(
    st.sampled_from(
        [
            f'<qkd_node xmlns="{NODE_NS}">',
            "</qkd_node>",
            "<config>",
            "</config>",
            f"<qkdn_id>{NODE_ID}</qkdn_id>",
            "<qkd_links><qkd_link>",
            "</qkd_link></qkd_links>",
            f'<qkdl_type xmlns:t="{TYPES_NS}">t:VIRT</qkdl_type>',
            "<virt_bandwidth>-1</virt_bandwidth>",
            "<qkdl_id>",
            "</qkdl_id>",
            "&amp;",
            "<![CDATA[x]]>",
            '<?xml version="1.0"?>',
        ]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(xmlish, fragments))
def test_random_input_never_crashes_validation(text: str) -> None:
    schema = Schema.default()
    for errors in (
        schema.validate_config_xml(text),
        schema.validate_data_xml(text),
        schema.validate_notification_xml(text),
    ):
        assert isinstance(errors, list)
        assert all(isinstance(error, ValidationError) for error in errors)
    # A conversion either works or raises the module's own error.
    with contextlib.suppress(SchemaError):
        schema.xml_to_json(text)
