"""Intent compilation: ETSI 015 names, our augment, YANG-valid, and withdrawals that mirror installs."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from controller.errors import CompileError
from controller.intents.compile import (
    EditKind,
    RelaySettings,
    check_edits,
    compile_install,
    compile_rejection,
    compile_reroute,
    compile_withdraw,
)
from controller.model import KeyRequest, Path, QoS
from controller.names import NC_NS, QKD_NS, q
from controller.nodedata import parse_node
from yang.model import KeyMode
from yang.schema import Schema

N1, N2, N3, N4 = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"n{i}")) for i in range(1, 5))
L12, L23, L34, L13 = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"l{i}")) for i in range(4))
INTENT = str(uuid.uuid4())
REQUEST = KeyRequest(
    N1,
    N3,
    server_app_id="app1",
    client_app_ids=("app2",),
    qos=QoS(min_bandwidth=1_000, max_bandwidth=4_000, priority=2, ttl=60, jitter=5),
)
PATH = Path((N1, N2, N3), (L12, L23))


def validator(xml: str) -> list[str]:
    return [str(e) for e in Schema.default().validate_config_xml(xml)]


def test_install_writes_a_virt_link_and_an_app_on_every_node() -> None:
    edits = compile_install(INTENT, REQUEST, PATH, 3_000, RelaySettings("otp", 5))
    assert list(edits) == [N1, N2, N3]
    for index, node in enumerate(PATH.nodes):
        edit = edits[node]
        assert edit.kind is EditKind.INSTALL and edit.data is not None
        data = parse_node(edit.data)
        assert data.qkdn_id == node
        [link] = data.virt_links
        assert link.qkdl_id == INTENT and link.bandwidth == 3_000
        assert (link.local, link.remote) == (N1, N3)
        assert link.prev_hop == (PATH.nodes[index - 1] if index else None)
        assert link.next_hops == ((PATH.nodes[index + 1],) if index < 2 else ())
        [app] = data.apps
        assert app.app_id == INTENT and app.backing == (INTENT,)
        assert app.app_type == ("INTERNAL" if index == 1 else "CLIENT")
        assert (app.server_app_id, app.client_app_ids) == ("app1", ("app2",))
        assert (app.min_bandwidth, app.max_bandwidth, app.ttl, app.jitter) == (1_000, 4_000, 60, 5)
        assert app.priority == 2
        assert app.local_qkdn_id == node
        assert app.remote_qkdn_id == (N1 if node == N3 else N3)
        assert app.admission_state == "admitted" and app.admission_path == PATH.nodes
        assert "<mode>otp</mode>" in edit.data and "<buffer>5</buffer>" in edit.data
        assert (
            'xmlns:etsi-qkdn-types="urn:etsi:qkd:yang:etsi-qkd-node-types">etsi-qkdn-types:VIRT'
            in edit.data
        )


def test_every_compiled_edit_is_valid_yang() -> None:
    request = KeyRequest(N1, N4, server_app_id="app1", client_app_ids=("app2", "app3"))
    edits = compile_install(INTENT, request, Path((N1, N2, N3, N4), (L12, L23, L34)), 1)
    for edit in edits.values():
        assert edit.data is not None
        assert validator(edit.data) == []
    rejection = compile_rejection(INTENT, REQUEST, "hop n1–n2 has 0 bit/s free")
    assert validator(rejection[N1].data or "") == []
    check_edits(edits, validator)


def test_sent_config_carries_replace_and_delete_operations() -> None:
    install = compile_install(INTENT, REQUEST, PATH, 3_000)[N2].config
    root = ET.fromstring(install)
    assert root.tag == f"{{{NC_NS}}}config"
    entries = root.findall(f".//{q('qkd_link')}") + root.findall(f".//{q('qkd_app')}")
    assert [e.get(f"{{{NC_NS}}}operation") for e in entries] == ["replace", "replace"]
    withdraw = compile_withdraw(INTENT, [N1, N2])
    assert set(withdraw) == {N1, N2}
    root = ET.fromstring(withdraw[N2].config)
    node = root.find(q("qkd_node"))
    assert node is not None and node.findtext(q("qkdn_id")) == N2
    link = root.find(f".//{q('qkd_link')}")
    app = root.find(f".//{q('qkd_app')}")
    assert link is not None and app is not None
    assert link.get(f"{{{NC_NS}}}operation") == "delete" and link.findtext(q("qkdl_id")) == INTENT
    assert app.get(f"{{{NC_NS}}}operation") == "delete" and app.findtext(q("app_id")) == INTENT
    assert withdraw[N2].data is None


def test_reroute_rewrites_the_new_path_and_deletes_on_nodes_left_behind() -> None:
    old = Path((N1, N2, N3), (L12, L23))
    new = Path((N1, N3), (L13,))
    edits = compile_reroute(INTENT, REQUEST, old, new, 2_000)
    assert {n: e.kind for n, e in edits.items()} == {
        N1: EditKind.INSTALL,
        N3: EditKind.INSTALL,
        N2: EditKind.WITHDRAW,
    }


def test_rejection_is_one_app_on_the_source_node_with_the_reason() -> None:
    edits = compile_rejection(INTENT, REQUEST, "hop a–b has 5 bit/s free <&>")
    assert list(edits) == [N1]
    data = parse_node(edits[N1].data or "")
    [app] = data.apps
    assert app.admission_state == "rejected"
    assert app.admission_reason == "hop a–b has 5 bit/s free <&>"
    assert app.backing == () and data.virt_links == ()


def test_bad_paths_and_invalid_yang_are_refused_before_sending() -> None:
    with pytest.raises(CompileError, match="does not join"):
        compile_install(INTENT, REQUEST, Path((N2, N3), (L23,)), 1)
    with pytest.raises(CompileError, match="visits a node twice"):
        compile_install(INTENT, REQUEST, Path((N1, N2, N1, N3), (L12, L12, L13)), 1)
    bad = KeyRequest(N1, N3, server_app_id="app1")
    edits = compile_install("not-a-uuid", bad, PATH, 1)
    with pytest.raises(CompileError, match="fails YANG validation"):
        check_edits(edits, validator)


def test_namespaces_are_the_etsi_ones() -> None:
    edit = compile_install(INTENT, REQUEST, PATH, 1)[N1]
    assert f'<qkd_node xmlns="{QKD_NS}">' in edit.config
    assert '<admission xmlns="urn:qkdsdn:yang:qkdsdn-node">' in edit.config


def test_the_key_mode_is_written_on_every_node_and_in_a_rejection() -> None:
    hybrid = replace(REQUEST, key_mode=KeyMode.HYBRID_EITHER)
    edits = compile_install(INTENT, hybrid, PATH, 3_000)
    check_edits(edits, validator)
    for edit in edits.values():
        assert edit.data is not None
        [app] = parse_node(edit.data).apps
        assert app.key_mode is KeyMode.HYBRID_EITHER
    default = compile_install(INTENT, REQUEST, PATH, 3_000)[N2].data
    assert default is not None and ">qkd-preferred</key_mode>" in default  # always written
    rejection = compile_rejection(INTENT, replace(REQUEST, key_mode=KeyMode.QKD_ONLY), "full")
    check_edits(rejection, validator)
    assert list(rejection) == [N1]
    data = rejection[N1].data
    assert data is not None
    [app] = parse_node(data).apps
    assert app.key_mode is KeyMode.QKD_ONLY


@pytest.mark.parametrize("value", ["plain-id", "a&b", "a<b>c", 'say "hi"', "it's", "x\ny\tz\r"])
def test_element_text_and_attributes_are_escaped_exactly_as_the_standard_library_does(
    value: str,
) -> None:
    from xml.sax.saxutils import escape, quoteattr

    from controller.names import element

    assert element("leaf", text=value) == f"<leaf>{escape(value)}</leaf>"
    assert element("node", "<c/>", nc__operation=value) == (
        f"<node nc:operation={quoteattr(value)}><c/></node>"
    )
