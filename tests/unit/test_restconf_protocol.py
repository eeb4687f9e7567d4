"""RESTCONF without sockets: query parameters, resource paths, and requests to responses."""

from __future__ import annotations

import json

import pytest

from agents.datastore import Datastore
from agents.restconf.errors import RestconfError
from agents.restconf.protocol import Request, Restconf
from agents.restconf.query import limit_depth, parse_fields, parse_query, select_fields
from agents.restconf.uri import location, parse_target
from tests.harness.netconf import INITIAL_RUNNING, NODE_ID, FakeBackend
from yang.schema import NodeInfo, Schema

NODE = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
MODULES = {"etsi-qkd-sdn-node": "urn:etsi:qkd:yang:etsi-qkd-node"}


def _info(names: tuple[str, ...]) -> NodeInfo | None:
    return Schema.default().node_info(list(names))


def test_fields_expressions_nest_and_select() -> None:
    assert parse_fields("a;b/c(d;e)") == {"a": None, "b": {"c": {"d": None, "e": None}}}
    value = {"a": 1, "b": {"c": [{"d": 2, "e": 3, "f": 4}]}, "z": 0}
    assert select_fields(value, parse_fields("a;b/c(d)")) == {"a": 1, "b": {"c": [{"d": 2}]}}
    with pytest.raises(RestconfError):
        parse_fields("a(b")
    assert limit_depth({"a": {"b": 1}, "c": 2}, 2) == {"a": {}, "c": 2}


def test_query_parameters_are_checked() -> None:
    assert parse_query({"depth": ["unbounded"]}).depth is None
    for bad in ({"depth": ["0"]}, {"content": ["some"]}, {"x": ["1"]}, {"depth": ["1", "2"]}):
        with pytest.raises(RestconfError) as caught:
            parse_query(bad)
        assert caught.value.status == 400


def test_resource_paths_with_keys_round_trip() -> None:
    target = parse_target("etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=a%2Cb", MODULES, _info)
    assert target.segments[-1].keys == ("a,b",)
    assert target.info.kind == "list"
    assert location(target.segments) == "etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=a%2Cb"
    for bad in ("qkd_node", "etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link/qkdl_id", "x:y"):
        with pytest.raises(RestconfError):
            parse_target(bad, MODULES, _info)


def test_a_request_becomes_a_response_without_a_server() -> None:
    store = Datastore(Schema.default(), FakeBackend(), None, INITIAL_RUNNING)
    restconf = Restconf(store)
    got = restconf.handle(Request("GET", f"{NODE}/qkdn_id", user="u"))
    assert got.status == 200
    assert json.loads(got.body) == {"etsi-qkd-sdn-node:qkdn_id": NODE_ID}
    anonymous = restconf.handle(Request("GET", NODE))
    assert anonymous.status == 401
    put = restconf.handle(
        Request(
            "PUT",
            f"{NODE}/qkdn_location_id",
            headers={"content-type": "application/yang-data+json"},
            body=b'{"etsi-qkd-sdn-node:qkdn_location_id": "roof"}',
            user="u",
        )
    )
    assert put.status == 204
    assert store.running_json()["etsi-qkd-sdn-node:qkd_node"]["qkdn_location_id"] == "roof"
    again = restconf.handle(Request("GET", f"{NODE}/qkdn_location_id", user="u"))
    assert json.loads(again.body) == {"etsi-qkd-sdn-node:qkdn_location_id": "roof"}
