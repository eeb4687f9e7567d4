"""RFC 6241 §8.9 XPath filters, evaluated by libyang on the golden node state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from lxml import etree

from agents.netconf.errors import BASE_NS, ErrorTag, NetconfError, base_element
from agents.netconf.xpath import select_by_filter, select_xpath, to_libyang_xpath
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
SDN_NS = "urn:qkdsdn:yang:qkdsdn-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
STATE = Path(__file__).resolve().parents[1] / "golden" / "qkd-node-state.xml"
LINK_A = "5b7d1c2e-0000-5000-8000-0000000000a1"
LINK_B = "5b7d1c2e-0000-5000-8000-0000000000b1"
Q: dict[str | None, str] = {"q": NS}


def _wrapper() -> etree._Element:
    data = base_element("data")
    data.append(etree.parse(str(STATE)).getroot())
    return data


def _select(select: str, nsmap: Mapping[str | None, str] | None = None) -> etree._Element:
    return select_xpath(Schema.default(), _wrapper(), select, nsmap or {})


def _names(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element if isinstance(child.tag, str)]


def _texts(element: etree._Element, path: str) -> list[str]:
    found = element.xpath(path, namespaces={"q": NS, "s": SDN_NS})
    assert isinstance(found, list)
    return [str(v) for v in found]


def test_container_is_selected_whole_with_its_ancestors() -> None:
    data = _select("/qkd_node/qkd_links")
    assert etree.QName(data).namespace == BASE_NS
    assert etree.QName(data).localname == "data"
    (node,) = data
    assert _names(node) == ["qkd_links"]
    assert _texts(data, "/*/q:qkd_node/q:qkd_links/q:qkd_link/q:qkdl_id/text()") == [
        LINK_A,
        LINK_B,
    ]
    assert _texts(data, "//q:qkdl_performance/q:skr/text()") == ["12000"]
    assert _texts(data, "//q:qkdn_id[parent::q:qkd_node]/text()") == []


def test_list_entry_by_key_predicate() -> None:
    data = _select(f"/q:qkd_node/q:qkd_links/q:qkd_link[q:qkdl_id='{LINK_B}']", Q)
    assert _texts(data, "//q:qkd_link/q:qkdl_id/text()") == [LINK_B]
    assert _texts(data, "//q:qkd_link/q:virt_bandwidth/text()") == ["4000"]


def test_leaf_keeps_the_keys_of_its_list_entries() -> None:
    data = _select(f"/qkd_node/qkd_links/qkd_link[qkdl_id='{LINK_A}']/qkdl_performance/skr")
    (link,) = data.iter(f"{{{NS}}}qkd_link")
    assert _names(link) == ["qkdl_id", "qkdl_performance"]
    assert _texts(link, "q:qkdl_id/text()") == [LINK_A]
    assert _texts(link, "q:qkdl_performance/*/text()") == ["12000"]


def test_union_and_descendant_axis() -> None:
    data = _select("//q:skr | /q:qkd_node/q:qkdn_id", Q)
    (node,) = data
    assert _names(node) == ["qkdn_id", "qkd_links"]
    assert _texts(data, "//q:skr/text()") == ["12000"]
    nested = _select("//qkd_link/qkdl_performance/skr | //qkd_link")
    assert _texts(nested, "//q:qkd_link/q:qkdl_id/text()") == [LINK_A, LINK_B]
    assert _texts(nested, "//q:skr/text()") == ["12000"]
    assert _texts(nested, "//q:qkd_link/q:virt_bandwidth/text()") == ["4000"]


def test_prefixed_and_unprefixed_forms_select_the_same() -> None:
    unprefixed = _select("/qkd_node/qkd_links/qkd_link/qkdl_enable")
    prefixed = _select("/n:qkd_node/n:qkd_links/n:qkd_link/n:qkdl_enable", {"n": NS})
    by_module = _select("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link/qkdl_enable")
    by_yang_prefix = _select("/etsi-qkdn:qkd_node/etsi-qkdn:qkd_links")
    expected = etree.tostring(unprefixed)
    assert _texts(unprefixed, "//q:qkdl_enable/text()") == ["true", "true"]
    assert etree.tostring(prefixed) == expected
    assert etree.tostring(by_module) == expected
    assert _texts(by_yang_prefix, "//q:qkdl_enable/text()") == ["true", "true"]


def test_augment_leaves_prefixed_and_unprefixed() -> None:
    prefixed = _select("/q:qkd_node/s:key_manager/s:etsi004_address", {"q": NS, "s": SDN_NS})
    assert _texts(prefixed, "/*/q:qkd_node/s:key_manager/s:etsi004_address/text()") == [
        "127.0.0.1:50051"
    ]
    assert _texts(prefixed, "//s:etsi014_url") == []
    unprefixed = _select("/qkd_node/qkd_applications/qkd_app/admission/state")
    assert _texts(unprefixed, "//q:qkd_app/q:app_id/text()") == [
        "7f3e9a10-0000-5000-8000-0000000000c1"
    ]
    assert _texts(unprefixed, "//q:qkd_app/s:admission/s:state/text()") == ["admitted"]


def test_value_predicate_on_identityref_and_number() -> None:
    phys = _select("/qkd_node/qkd_links/qkd_link[qkdl_type='etsi-qkd-node-types:PHYS']/qkdl_id")
    assert _texts(phys, "//q:qkdl_id/text()") == [LINK_A]
    fast = _select("//qkd_link[qkdl_performance/skr > 10000]/qkdl_id")
    assert _texts(fast, "//q:qkdl_id/text()") == [LINK_A]


def test_identityref_values_keep_a_declared_prefix() -> None:
    data = _select("/qkd_node/qkdn_status")
    (status,) = data.iter(f"{{{NS}}}qkdn_status")
    prefix, _, name = (status.text or "").partition(":")
    assert name == "OPERATING"
    assert status.nsmap[prefix] == TYPES_NS


def test_no_match_gives_an_empty_data() -> None:
    for select in ("/qkd_node/qkd_links/qkd_link[qkdl_id='nope']", "/qkd_node/no_such_node"):
        data = _select(select)
        assert etree.QName(data).localname == "data"
        assert len(data) == 0


def test_root_selects_everything() -> None:
    data = _select("/")
    assert etree.tostring(data) == etree.tostring(_wrapper())


def test_empty_datastore_gives_an_empty_data() -> None:
    empty = etree.Element(f"{{{BASE_NS}}}data")
    assert len(select_xpath(Schema.default(), empty, "/qkd_node", {})) == 0


def test_the_input_is_not_changed() -> None:
    wrapper = _wrapper()
    before = etree.tostring(wrapper)
    select_xpath(Schema.default(), wrapper, "/qkd_node/qkd_links", {})
    assert etree.tostring(wrapper) == before


@pytest.mark.parametrize(
    ("select", "nsmap", "reason"),
    [
        ("/qkd_node/[[", {}, "Unexpected XPath token"),
        ("count(/qkd_node)", {}, "not a node set"),
        ("/x:qkd_node", {}, "prefix 'x' is not declared"),
        ("/x:qkd_node", {"x": "urn:example:other"}, "no module of this agent has"),
        ("", {}, "invalid XPath"),
    ],
)
def test_bad_xpath_is_invalid_value(select: str, nsmap: dict[str | None, str], reason: str) -> None:
    with pytest.raises(NetconfError) as caught:
        _select(select, nsmap)
    (error,) = caught.value.errors
    assert error.tag is ErrorTag.INVALID_VALUE
    assert reason in error.message


def test_filter_element_supplies_select_and_prefixes() -> None:
    rpc = etree.fromstring(
        f'<rpc xmlns="{BASE_NS}" xmlns:n="{NS}"><get>'
        '<filter type="xpath" select="/n:qkd_node/n:qkdn_location_id"/></get></rpc>'
    )
    filter_element = rpc[0][0]
    data = select_by_filter(Schema.default(), _wrapper(), filter_element)
    assert _texts(data, "//q:qkdn_location_id/text()") == ["lab-rack-2"]
    assert _texts(data, "//q:qkdn_id") == []


def test_filter_without_select_is_missing_attribute() -> None:
    filter_element = etree.fromstring(f'<filter xmlns="{BASE_NS}" type="xpath"/>')
    with pytest.raises(NetconfError) as caught:
        select_by_filter(Schema.default(), _wrapper(), filter_element)
    assert caught.value.errors[0].tag is ErrorTag.MISSING_ATTRIBUTE


def test_translation_leaves_literals_axes_and_operators_alone() -> None:
    modules = {NS: "etsi-qkd-sdn-node"}
    select = "/q:a/child::q:b[q:c = 'z:x' and @q:d != \"q :y\"] | /q:*"
    assert to_libyang_xpath(select, {"q": NS}, modules) == (
        "/etsi-qkd-sdn-node:a/child::etsi-qkd-sdn-node:b"
        "[etsi-qkd-sdn-node:c = 'z:x' and @etsi-qkd-sdn-node:d != \"q :y\"]"
        " | /etsi-qkd-sdn-node:*"
    )


def test_translation_anchors_relative_paths_outside_predicates_at_the_root() -> None:
    modules = {NS: "etsi-qkd-sdn-node"}
    assert to_libyang_xpath("a/b[c/d]", {}, modules) == "/a/b[c/d]"
    assert to_libyang_xpath("a | (b) | count(c)", {}, modules) == "/a | (/b) | count(/c)"
    assert to_libyang_xpath("descendant::x | ./y | *", {}, modules) == (
        "/descendant::x | /./y | /*"
    )
    assert to_libyang_xpath("/a//b[. = 'x']", {}, modules) == "/a//b[. = 'x']"


def test_relative_path_is_evaluated_from_the_root() -> None:
    relative = _select("qkd_node/qkd_links/qkd_link/qkdl_id")
    assert _texts(relative, "//q:qkdl_id/text()") == [LINK_A, LINK_B]
    assert etree.tostring(_select(".")) == etree.tostring(_wrapper())


def test_identityref_literal_with_a_declared_xml_prefix() -> None:
    nsmap: dict[str | None, str] = {"t": TYPES_NS, "u": "urn:example:other"}
    phys = _select("/qkd_node/qkd_links/qkd_link[qkdl_type='t:PHYS']/qkdl_id", nsmap)
    assert _texts(phys, "//q:qkdl_id/text()") == [LINK_A]
    virt = _select('//qkd_link[qkdl_type = "t:VIRT"]/qkdl_id', nsmap)
    assert _texts(virt, "//q:qkdl_id/text()") == [LINK_B]
    foreign = _select("//qkd_link[qkdl_type='u:PHYS']/qkdl_id", nsmap)
    assert len(foreign) == 0
