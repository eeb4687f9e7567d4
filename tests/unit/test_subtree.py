"""RFC 6241 §6 subtree filters on a small qkd_node tree."""

from __future__ import annotations

from lxml import etree

from agents.netconf.subtree import filter_subtree

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES = "urn:etsi:qkd:yang:etsi-qkd-node-types"

DATA = f"""
<qkd_node xmlns="{NS}" xmlns:t="{TYPES}">
  <qkdn_id>00000000-0000-0000-0000-000000000001</qkdn_id>
  <qkdn_location_id>lab</qkdn_location_id>
  <qkd_links>
    <qkd_link>
      <qkdl_id>00000000-0000-0000-0000-0000000000aa</qkdl_id>
      <qkdl_type>t:PHYS</qkdl_type>
      <qkdl_enable>true</qkdl_enable>
      <qkdl_performance><skr>1000</skr><eskr>900</eskr></qkdl_performance>
    </qkd_link>
    <qkd_link>
      <qkdl_id>00000000-0000-0000-0000-0000000000bb</qkdl_id>
      <qkdl_type>t:VIRT</qkdl_type>
      <qkdl_enable>false</qkdl_enable>
      <virt_next_hop>00000000-0000-0000-0000-000000000002</virt_next_hop>
      <virt_next_hop>00000000-0000-0000-0000-000000000003</virt_next_hop>
    </qkd_link>
  </qkd_links>
</qkd_node>
"""


def _keys_of(element: etree._Element) -> tuple[str, ...]:
    return ("qkdl_id",) if etree.QName(element).localname == "qkd_link" else ()


def _run(filter_xml: str, *, with_keys: bool = False) -> list[etree._Element]:
    data = etree.fromstring(DATA)
    filter_element = etree.fromstring(f"<filter>{filter_xml}</filter>")
    return filter_subtree([data], list(filter_element), _keys_of if with_keys else None)


def _texts(result: list[etree._Element], local: str) -> list[str]:
    return [
        (element.text or "").strip() for root in result for element in root.iter(f"{{{NS}}}{local}")
    ]


def test_selection_of_the_top_container_returns_everything() -> None:
    result = _run(f'<qkd_node xmlns="{NS}"/>')
    assert len(result) == 1
    assert etree.tostring(result[0], method="c14n") == etree.tostring(
        etree.fromstring(DATA), method="c14n"
    )


def test_empty_filter_selects_nothing() -> None:
    assert _run("") == []


def test_filter_matching_nothing_gives_empty_result() -> None:
    assert _run('<qkd_node xmlns="urn:other"/>') == []
    assert _run(f'<qkd_node xmlns="{NS}"><qkd_apps/></qkd_node>') == []


def test_containment_and_selection_pick_only_the_selected_leaf() -> None:
    result = _run(f'<qkd_node xmlns="{NS}"><qkdn_id/></qkd_node>')
    assert [etree.QName(child).localname for child in result[0]] == ["qkdn_id"]


def test_content_match_only_selects_the_whole_matching_entry() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link>'
        "<qkdl_id>00000000-0000-0000-0000-0000000000bb</qkdl_id>"
        "</qkd_link></qkd_links></qkd_node>"
    )
    assert _texts(result, "qkdl_id") == ["00000000-0000-0000-0000-0000000000bb"]
    assert len(_texts(result, "virt_next_hop")) == 2


def test_content_match_with_selection_returns_match_and_selected_only() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link>'
        "<qkdl_enable>true</qkdl_enable><qkdl_performance/>"
        "</qkd_link></qkd_links></qkd_node>"
    )
    link = result[0].find(f"{{{NS}}}qkd_links/{{{NS}}}qkd_link")
    assert link is not None
    assert [etree.QName(c).localname for c in link] == ["qkdl_enable", "qkdl_performance"]


def test_list_keys_are_added_when_keys_are_known() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link><skr_missing/><qkdl_performance/>'
        "</qkd_link></qkd_links></qkd_node>",
        with_keys=True,
    )
    assert _texts(result, "qkdl_id") == ["00000000-0000-0000-0000-0000000000aa"]


def test_failing_content_match_excludes_the_entry() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link><qkdl_id>nope</qkdl_id>'
        "</qkd_link></qkd_links></qkd_node>"
    )
    assert result == []


def test_identityref_content_match_resolves_prefixes() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link>'
        f'<qkdl_type xmlns:x="{TYPES}">x:VIRT</qkdl_type><qkdl_id/>'
        "</qkd_link></qkd_links></qkd_node>"
    )
    assert _texts(result, "qkdl_id") == ["00000000-0000-0000-0000-0000000000bb"]


def test_filter_without_namespace_matches_any_namespace() -> None:
    result = _run('<qkd_node xmlns=""><qkdn_location_id/></qkd_node>')
    assert _texts(result, "qkdn_location_id") == ["lab"]


def test_sibling_filters_on_the_same_node_select_the_union() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkdn_id/></qkd_node><qkd_node xmlns="{NS}"><qkdn_location_id/></qkd_node>'
    )
    assert [etree.QName(child).localname for child in result[0]] == [
        "qkdn_id",
        "qkdn_location_id",
    ]


def test_leaf_list_content_match_selects_the_matching_value() -> None:
    result = _run(
        f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link><qkdl_id/>'
        "<virt_next_hop>00000000-0000-0000-0000-000000000003</virt_next_hop>"
        "</qkd_link></qkd_links></qkd_node>"
    )
    assert _texts(result, "virt_next_hop") == ["00000000-0000-0000-0000-000000000003"]
    assert _texts(result, "qkdl_id") == ["00000000-0000-0000-0000-0000000000bb"]


def test_filter_does_not_modify_the_data() -> None:
    data = etree.fromstring(DATA)
    before = etree.tostring(data)
    filter_element = etree.fromstring(f'<f><qkd_node xmlns="{NS}"><qkdn_id/></qkd_node></f>')
    result = filter_subtree([data], list(filter_element))
    result[0].append(etree.Element("extra"))
    assert etree.tostring(data) == before
