"""Parsing the node's running config into associations, and waiting for admission."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.intents.compile import compile_install, compile_rejection
from controller.model import KeyRequest, Path
from km.associations import (
    AdmissionState,
    AppRequest,
    Associations,
    ConfigError,
    parse_node_config,
)
from km.relay.hop_crypto import RelayMode
from km.supply import SupplyError
from lab.plan import link_uuid, node_uuid
from yang.schema import Schema

N1, N2, N3 = (node_uuid(n) for n in ("qnode1", "qnode2", "qnode3"))
INTENT = "11111111-2222-3333-4444-555555555555"


def controller_json(node: str, rejected: bool = False) -> str:
    """What the controller writes on `node`, as the agent pushes it (RFC 7951)."""
    request = KeyRequest(N1, N3, "app1", ("app2",))
    if rejected:
        edit = compile_rejection(INTENT, request, "no free key rate on qnode2–qnode3")[node]
    else:
        path = Path((N1, N2, N3), (link_uuid("qnode1", "qnode2"), link_uuid("qnode2", "qnode3")))
        edit = compile_install(INTENT, request, path, 512)[node]
    assert edit.data is not None
    return json.dumps(Schema.default().xml_to_json(edit.data, config_only=True))


def test_controller_install_parses_at_every_node_of_the_path() -> None:
    source, middle, end = (parse_node_config(controller_json(n), 7) for n in (N1, N2, N3))
    assert source.revision == 7 and source.qkdn_id == N1
    (a,) = source.associations
    assert (a.master, a.slaves, a.state) == ("app1", ("app2",), AdmissionState.ADMITTED)
    assert (a.prev_hop, a.next_hop, a.path) == (None, N2, (N1, N2, N3))
    assert a.virt_link_id == INTENT and a.mode is RelayMode.AES_GCM and a.buffer == 3
    assert source.source_association("app1", ["app2"], N3) == a
    (m,) = middle.associations
    assert (m.prev_hop, m.next_hop) == (N1, N3)
    assert middle.forwarding_entry(INTENT, N1) == m
    assert middle.forwarding_entry(INTENT, N3) is None
    assert middle.source_association("app1", ["app2"], N3) is None
    (e,) = end.associations
    assert (e.prev_hop, e.next_hop) == (N2, None)
    assert end.forwarding_entry(INTENT, N2) == e


def test_controller_rejection_parses_with_its_reason() -> None:
    view = parse_node_config(controller_json(N1, rejected=True))
    assoc = view.source_association("app1", ["app2"], N3)
    assert assoc is not None and assoc.state is AdmissionState.REJECTED
    assert assoc.reason == "no free key rate on qnode2–qnode3"
    assert assoc.virt_link_id is None


U = "00000000-0000-4000-8000-00000000000"  # + one hex digit: a yang:uuid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "expected an object, not an array"),
        ('{"etsi-qkd-sdn-node:qkd_node": {}}', "no qkdn_id"),
        ('{"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": "x"}}', "qkdn_id: 'x' does not match"),
        (
            f'{{"etsi-qkd-sdn-node:qkd_node": {{"qkdn_id": "{U}1", "qkd_applications": {{"qkd_app":'
            f' [{{"app_id": "{U}a", "qkdsdn-node:admission": {{"state": "maybe"}}}}]}}}}}}',
            "admission/state: unknown value 'maybe'",
        ),
        (
            f'{{"etsi-qkd-sdn-node:qkd_node": {{"qkdn_id": "{U}1", "qkd_applications": {{"qkd_app":'
            f' [{{"app_id": "{U}a", "qkdsdn-node:relay": {{"mode": "rot13"}}}}]}}}}}}',
            "relay/mode",
        ),
        (
            f'{{"etsi-qkd-sdn-node:qkd_node": {{"qkdn_id": "{U}1", "qkd_links": {{"qkd_link":'
            f' [{{"qkdl_id": "{U}b", "qkdl_type": "etsi-qkd-node-types:VIRT", "virt_next_hop": 5}}]}}}}}}',
            "virt_next_hop: expected an array",
        ),
        (
            f'{{"etsi-qkd-sdn-node:qkd_node": {{"qkdn_id": "{U}1", "qkd_links": {{"qkd_link":'
            f' [{{"qkdl_id": "{U}b", "qkdl_type": "etsi-qkd-node-types:WORMHOLE"}}]}}}}}}',
            "qkdl_type: unknown value 'etsi-qkd-node-types:WORMHOLE'",
        ),
    ],
)
def test_bad_configs_are_refused_with_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_node_config(text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_any_json_parses_or_raises_config_error(doc: Any) -> None:
    for candidate in (doc, {"etsi-qkd-sdn-node:qkd_node": doc}):
        with contextlib.suppress(ConfigError):
            parse_node_config(json.dumps(candidate))


def _view_json(state: str, reason: str = "") -> str:
    admission: dict[str, Any] = {"state": state}
    if reason:
        admission["reason"] = reason
    return json.dumps(
        {
            "etsi-qkd-sdn-node:qkd_node": {
                "qkdn_id": N1,
                "qkd_applications": {
                    "qkd_app": [
                        {
                            "app_id": INTENT,
                            "server_app_id": "app1",
                            "client_app_id": ["app2"],
                            "remote_qkdn_id": N3,
                            "qkdsdn-node:admission": admission,
                        }
                    ]
                },
            }
        }
    )


REQUEST = AppRequest("app1", ("app2",), N3, 256, 3600)


def test_ensure_registers_once_and_waits_for_admission() -> None:
    async def run() -> None:
        calls: list[AppRequest] = []

        async def register(request: AppRequest) -> None:
            calls.append(request)

        book = Associations(N1, register)
        waiter = asyncio.create_task(book.ensure(REQUEST, 5.0))
        await asyncio.sleep(0)
        assert calls == [REQUEST]
        book.update(parse_node_config(_view_json("pending")))
        await asyncio.sleep(0)
        assert not waiter.done()
        book.update(parse_node_config(controller_json(N1)))
        assoc = await waiter
        assert assoc.state is AdmissionState.ADMITTED and calls == [REQUEST]

    asyncio.run(run())


def test_ensure_reports_the_rejection_reason() -> None:
    async def run() -> None:
        async def register(request: AppRequest) -> None:
            book.update(parse_node_config(_view_json("rejected", "no path")))

        book = Associations(N1, register)
        with pytest.raises(SupplyError, match="rejected: no path") as info:
            await book.ensure(REQUEST, 5.0)
        assert info.value.status_code == 503

    asyncio.run(run())


def test_ensure_times_out_with_503() -> None:
    async def run() -> None:
        async def register(request: AppRequest) -> None:
            return None

        book = Associations(N1, register)
        with pytest.raises(SupplyError, match=r"not admitted within 0\.05 s"):
            await book.ensure(REQUEST, 0.05)

    asyncio.run(run())


def test_a_config_for_another_node_is_refused() -> None:
    async def register(request: AppRequest) -> None:
        return None

    book = Associations(N2, register)
    with pytest.raises(ConfigError, match="pushed to the KM"):
        book.update(parse_node_config(controller_json(N1)))


def test_an_admission_wins_over_an_older_rejection_of_the_same_pair() -> None:
    rejected = json.loads(controller_json(N1, rejected=True))
    admitted = json.loads(controller_json(N1))
    node = admitted["etsi-qkd-sdn-node:qkd_node"]
    old = rejected["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"][0]
    old["app_id"] = "99999999-2222-3333-4444-555555555555"
    node["qkd_applications"]["qkd_app"].insert(0, old)
    view = parse_node_config(json.dumps(admitted))
    assoc = view.source_association("app1", ["app2"], N3)
    assert assoc is not None and assoc.state is AdmissionState.ADMITTED
