"""Property tests: whatever the document, the validator answers with problems, never a crash."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.topology import (
    LINK_KEYS,
    SETTINGS_KEYS,
    TOP_KEYS,
    Problem,
    Topology,
    TopologyError,
    parse_topology,
    validate_document,
)

KNOWN_WORDS = (
    *TOP_KEYS,
    *SETTINGS_KEYS,
    *LINK_KEYS,
    "location",
    "node",
    "qnode1",
    "qnode2",
    "qnode3",
    "field",
    "otp",
    "aes-gcm",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(KNOWN_WORDS),
)
keys = st.one_of(st.sampled_from(KNOWN_WORDS), st.text(max_size=8), st.integers(), st.none())
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=40,
)


def valid_doc() -> dict[str, Any]:
    return {
        "name": "triangle",
        "settings": {"key_size_bits": 256, "relay_mode": "aes-gcm", "e2e_buffer": 3},
        "defaults": {"preset": "field", "length_km": 20},
        "nodes": {"qnode1": {"location": "A"}, "qnode2": {}, "qnode3": None},
        "links": [
            {"between": ["qnode1", "qnode2"], "length_km": 25},
            {"between": ["qnode2", "qnode3"], "skr_bps": 50000, "qber": 0.02},
            {"between": ["qnode1", "qnode3"], "preset": "commercial", "extra_loss_db": 1.5},
        ],
        "apps": {"app1": {"node": "qnode1"}, "app2": "qnode3"},
    }


def containers(doc: object, found: list[dict[Any, Any] | list[Any]]) -> None:
    if isinstance(doc, dict):
        found.append(doc)
        for value in doc.values():
            containers(value, found)
    elif isinstance(doc, list):
        found.append(doc)
        for value in doc:
            containers(value, found)


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with a few values replaced, keys added or entries removed."""
    doc = valid_doc()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        found: list[dict[Any, Any] | list[Any]] = []
        containers(doc, found)
        target = draw(st.sampled_from(found))
        action = draw(st.sampled_from(["replace", "add", "remove"]))
        if isinstance(target, dict):
            existing = list(target)
            if action == "add" or not existing:
                target[draw(keys)] = draw(documents)
            else:
                key = draw(st.sampled_from(existing))
                if action == "remove":
                    del target[key]
                else:
                    target[key] = draw(documents)
        elif target:
            index = draw(st.integers(min_value=0, max_value=len(target) - 1))
            if action == "remove":
                del target[index]
            elif action == "add":
                target.append(draw(documents))
            else:
                target[index] = draw(documents)
    return doc


def check_answer(doc: object) -> None:
    before = copy.deepcopy(doc)
    problems = validate_document(doc, "random.yaml")
    assert all(isinstance(p, Problem) and p.message for p in problems)
    try:
        topology = parse_topology(doc, "random.yaml")
    except TopologyError as error:
        assert list(error.problems) == problems
        assert problems
    else:
        assert problems == []
        assert isinstance(topology, Topology)
    assert repr(doc) == repr(before)  # never changes its input (repr: NaN != NaN)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_never_crash_the_validator(doc: object) -> None:
    check_answer(doc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_never_crash_the_validator(doc: dict[str, Any]) -> None:
    check_answer(doc)


@settings(max_examples=100, deadline=None)
@given(mutated_documents())
def test_yaml_round_trip_gives_the_same_answer(doc: dict[str, Any]) -> None:
    """What a user writes to a file is judged as the document itself."""
    try:
        text = yaml.safe_dump(doc, sort_keys=False)
    except yaml.YAMLError:
        return  # not representable as YAML (e.g. surrogate characters)
    reloaded = yaml.safe_load(text)
    assert [p.message for p in validate_document(reloaded, "f")] == [
        p.message for p in validate_document(doc, "f")
    ]
