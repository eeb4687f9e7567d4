"""Peer relay addresses from the network: KM files may omit them, the controller writes each
hop's key manager on the VIRT links it installs, the KM reads them, its file still wins."""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from controller.intents.compile import check_edits, compile_install
from controller.model import KeyRequest, TopologySnapshot
from controller.model import Path as RoutePath
from controller.names import QKD_NS, SDN_NS
from controller.nodedata import parse_node
from km import config as km_config
from km.associations import parse_node_config
from km.relay.client import RelayClient
from km.relay.errors import FailureKind, RelayFailure
from lab.configs import PEER_RELAYS_ENV, peer_relays_from_env, process_configs
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan
from tests.unit.test_intents_service import Net
from yang.schema import Schema

N1, N2, N3 = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"n{i}")) for i in range(1, 4))
PATH = RoutePath((N1, N2, N3), (str(uuid.uuid4()), str(uuid.uuid4())))
REQUEST = KeyRequest(N1, N3, "app1", ("app2",))
RELAYS = {N1: "10.0.0.1:7001", N2: "10.0.0.2:7002", N3: "[fd00::3]:7003"}


def km_json(edit_data: str) -> str:
    """The node's running configuration as its agent pushes it to the KM (RFC 7951)."""
    return json.dumps(Schema.default().xml_to_json(edit_data, config_only=True))


def test_the_controller_names_each_hops_key_manager_and_the_km_reads_it() -> None:
    intent = str(uuid.uuid4())
    edits = compile_install(intent, REQUEST, PATH, 512, km_relays=RELAYS)
    check_edits(edits, lambda xml: [str(e) for e in Schema.default().validate_config_xml(xml)])
    learned = {}
    for node, edit in edits.items():
        assert edit.data is not None
        learned[node] = dict(parse_node_config(km_json(edit.data)).relay_addresses)
    # each KM learns its previous and next hop, never itself nor nodes further away
    assert learned == {
        N1: {N2: RELAYS[N2]},
        N2: {N1: RELAYS[N1], N3: RELAYS[N3]},
        N3: {N2: RELAYS[N2]},
    }
    plain = compile_install(intent, REQUEST, PATH, 512)[N2].data
    assert plain is not None and parse_node_config(km_json(plain)).relay_addresses == {}


def test_the_controller_reads_where_a_nodes_key_manager_relays() -> None:
    xml = (
        f'<qkd_node xmlns="{QKD_NS}"><qkdn_id>{N2}</qkdn_id>'
        f'<key_manager xmlns="{SDN_NS}"><relay_address>10.0.0.2:7002</relay_address>'
        "</key_manager></qkd_node>"
    )
    assert parse_node(xml).km_relay_address == "10.0.0.2:7002"
    assert parse_node(xml.replace("10.0.0.2:7002", "")).km_relay_address == ""


def _hop_entries(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)
    return {
        hop.findtext(f"{{{SDN_NS}}}qkdn_id") or "": hop.findtext(f"{{{SDN_NS}}}relay_address") or ""
        for hop in root.iter(f"{{{SDN_NS}}}hop_key_manager")
    }


def _with_relays(net: Net, relays: dict[str, str]) -> None:
    devices = {
        d: replace(device, km_relay_address=relays[net.snapshot.name_of(d)])
        for d, device in net.snapshot.devices.items()
    }
    net.snapshot = TopologySnapshot(devices, net.snapshot.links)


def test_installs_carry_the_known_addresses_and_a_moved_key_manager_is_rewritten() -> None:
    net = Net()
    _with_relays(net, {n: f"10.0.0.{i}:7000" for i, n in enumerate("abcd", 1)})
    intent = asyncio.run(net.service.submit(net.request("a", "c")))
    assert intent.path is not None
    source, middle = intent.path.nodes[0], intent.path.nodes[1]
    middle_name = net.snapshot.name_of(middle)
    at_source = net.devices.nodes[source].running[("link", intent.intent_id)]
    assert _hop_entries(at_source) == {middle: net.snapshot.devices[middle].km_relay_address}

    _with_relays(
        net,
        {
            n: f"10.0.0.{i}:{'7999' if n == middle_name else '7000'}"
            for i, n in enumerate("abcd", 1)
        },
    )
    asyncio.run(net.service.refresh_relays(middle))
    at_source = net.devices.nodes[source].running[("link", intent.intent_id)]
    assert _hop_entries(at_source)[middle].endswith(":7999")


def test_a_km_file_may_leave_out_its_peers_relay_addresses(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    learned = process_configs(plan, peer_relays=False)["km-b"]
    assert [sorted(p) for p in learned["peers"]] == [["node", "qkdl_id", "qkdn_id"]] * 2
    config = km_config.parse(learned, tmp_path / "config" / "km-b.yaml")
    assert [p.relay for p in config.peers] == [None, None]
    assert config.configured_relays() == {}
    given = km_config.parse(process_configs(plan)["km-b"], tmp_path / "config" / "km-b.yaml")
    assert set(given.configured_relays()) == {"a", "c"}


def test_the_lab_option_is_read_from_the_environment_and_checked() -> None:
    assert peer_relays_from_env({}) is True
    assert peer_relays_from_env({PEER_RELAYS_ENV: "config"}) is True
    assert peer_relays_from_env({PEER_RELAYS_ENV: "learn"}) is False
    with pytest.raises(ValueError, match=PEER_RELAYS_ENV):
        peer_relays_from_env({PEER_RELAYS_ENV: "guess"})


def test_the_relay_client_prefers_the_file_and_follows_a_learned_address_that_moves(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    create_lab_pki(tmp_path, ["a", "b", "c"], [])
    config = km_config.parse(process_configs(plan)["km-b"], tmp_path / "config" / "km-b.yaml")
    learned: dict[str, str] = {"a": "127.0.0.1:1", "c": "127.0.0.1:2"}

    async def scenario() -> None:
        client = RelayClient({"a": "127.0.0.1:9"}, config.tls, learned.get)
        try:
            assert client.address_of("a") == "127.0.0.1:9"  # the file wins
            assert client.address_of("c") == "127.0.0.1:2"
            first = client._channel("c")[0]
            assert client._channel("c")[0] is first  # kept while the address holds
            learned["c"] = "127.0.0.1:3"  # c's KM moved
            moved = client._channel("c")[0]
            assert moved is not first and client.address_of("c") == "127.0.0.1:3"
            with pytest.raises(RelayFailure) as failure:
                client._channel("z")
            assert failure.value.kind is FailureKind.UNAVAILABLE
            assert "no relay address known" in failure.value.message
            client.connect_ahead(["a", "c", "z"])  # an unknown peer is left for later
        finally:
            await client.close()

    asyncio.run(scenario())
