"""Key modes: the source each mode picks and falls back to, the health the network reports,
the policy's key_mode field, and origins in the ETSI 014 key container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from km.access import AccessPolicy, PolicyError
from km.associations import parse_node_config
from km.etsi014.service import key_container_json
from km.key_store import StoredKey
from km.pqc.health import PathIdentity, qkd_health
from km.pqc.mode import (
    KeyMode,
    Origin,
    QkdHealth,
    Source,
    after_failure,
    first_choice,
    waits_for_admission,
)
from km.pqc.origins import KeyOrigin, OriginBook
from lab.plan import node_uuid
from tests.harness.relay import empty_config, install_path, reject

DOWN = QkdHealth(False, "key association app1→app2 failed: link down")
PENDING = QkdHealth(False, "not admitted yet", may_wait=True)


@pytest.mark.parametrize(
    ("mode", "up", "down", "pending"),
    [
        (KeyMode.QKD_ONLY, Source.QKD, Source.REFUSE, Source.QKD),
        (KeyMode.QKD_PREFERRED, Source.QKD, Source.PQC, Source.PQC),
        (KeyMode.PQC_ONLY, Source.PQC, Source.PQC, Source.PQC),
        (KeyMode.HYBRID_STRICT, Source.HYBRID, Source.REFUSE, Source.HYBRID),
        (KeyMode.HYBRID_EITHER, Source.HYBRID, Source.PQC, Source.PQC),
    ],
)
def test_each_mode_picks_its_first_source_from_the_qkd_health(
    mode: KeyMode, up: Source, down: Source, pending: Source
) -> None:
    assert first_choice(mode, QkdHealth.ok()) is up
    assert first_choice(mode, DOWN) is down
    assert first_choice(mode, PENDING) is pending


@pytest.mark.parametrize(
    ("mode", "waits"),
    [
        (KeyMode.QKD_ONLY, False),  # waits anyway (no fallback), as long as admission takes
        (KeyMode.QKD_PREFERRED, True),
        (KeyMode.PQC_ONLY, False),
        (KeyMode.HYBRID_STRICT, False),
        (KeyMode.HYBRID_EITHER, True),
    ],
)
def test_modes_with_a_fallback_wait_for_a_pending_admission_but_not_for_a_refusal(
    mode: KeyMode, waits: bool
) -> None:
    assert waits_for_admission(mode, QkdHealth(False, "x", may_wait=True, pending=True)) is waits
    assert not waits_for_admission(mode, DOWN)
    assert not waits_for_admission(mode, QkdHealth(False, "pool empty", may_wait=True))
    assert not waits_for_admission(mode, QkdHealth.ok())


def test_fallbacks_follow_the_mode() -> None:
    assert after_failure(KeyMode.QKD_PREFERRED, Source.QKD, Source.QKD) is Source.PQC
    assert after_failure(KeyMode.QKD_ONLY, Source.QKD, Source.QKD) is Source.REFUSE
    assert after_failure(KeyMode.HYBRID_EITHER, Source.HYBRID, Source.QKD) is Source.PQC
    assert after_failure(KeyMode.HYBRID_EITHER, Source.HYBRID, Source.PQC) is Source.QKD
    assert after_failure(KeyMode.HYBRID_STRICT, Source.HYBRID, Source.QKD) is Source.REFUSE
    assert after_failure(KeyMode.HYBRID_EITHER, Source.PQC, Source.PQC) is Source.REFUSE
    assert after_failure(KeyMode.PQC_ONLY, Source.PQC, Source.PQC) is Source.REFUSE


class _Agent:
    def __init__(self, node: str) -> None:
        self.qkdn_id = node_uuid(node)
        self.config = empty_config(self.qkdn_id)

    def push(self, config: dict[str, object]) -> None:
        self.config = config  # type: ignore[assignment]


def _view(agent: _Agent) -> object:
    return parse_node_config(json.dumps(agent.config))


def test_health_follows_what_the_node_configuration_and_pools_say() -> None:
    agents = {n: _Agent(n) for n in ("qnode1", "qnode2", "qnode3")}
    src = agents["qnode1"]
    dst = node_uuid("qnode3")
    never = qkd_health(_view(src), "app1", ["app2"], dst, ready=0, first_hop_keys=None,  # type: ignore[arg-type]
                       failed_paths=frozenset())  # fmt: skip
    # first request: registering is the QKD path's first step, the decision is coming
    assert not never.usable and never.may_wait and never.pending
    reject(src, "qnode3", "no path with 256 bit/s free")  # type: ignore[arg-type]
    refused = qkd_health(_view(src), "app1", ["app2"], dst, ready=0, first_hop_keys=None,  # type: ignore[arg-type]
                         failed_paths=frozenset())  # fmt: skip
    assert not refused.usable and "no path with 256 bit/s free" in refused.reason
    src.config = empty_config(src.qkdn_id)
    install_path(agents, ["qnode1", "qnode2", "qnode3"])  # type: ignore[arg-type]
    view = _view(src)
    assert qkd_health(view, "app1", ["app2"], dst, ready=0, first_hop_keys=5,  # type: ignore[arg-type]
                      failed_paths=frozenset()).usable  # fmt: skip
    empty = qkd_health(view, "app1", ["app2"], dst, ready=0, first_hop_keys=0,  # type: ignore[arg-type]
                       failed_paths=frozenset())  # fmt: skip
    assert not empty.usable and "empty" in empty.reason
    assert qkd_health(view, "app1", ["app2"], dst, ready=2, first_hop_keys=0,  # type: ignore[arg-type]
                      failed_paths=frozenset()).usable  # fmt: skip
    assoc = view.source_association("app1", ["app2"], dst)  # type: ignore[attr-defined]
    failed = qkd_health(view, "app1", ["app2"], dst, ready=2, first_hop_keys=5,  # type: ignore[arg-type]
                        failed_paths=frozenset({PathIdentity.of(assoc)}))  # fmt: skip
    assert not failed.usable and "relay" in failed.reason


def test_key_mode_in_the_policy_per_sae_and_per_slave(tmp_path: Path) -> None:
    policy = AccessPolicy.from_dict(
        {
            "saes": {
                "app1": {"key_mode": "hybrid-either"},
                "app3": {"key_mode": {"app4": "qkd-only", "*": "pqc-only"}},
                "app2": {},
                "app4": {},
            }
        }
    )
    assert policy.mode_for("app1", "app2") is KeyMode.HYBRID_EITHER
    assert policy.mode_for("app3", "app4") is KeyMode.QKD_ONLY
    assert policy.mode_for("app3", "app1") is KeyMode.PQC_ONLY
    assert policy.mode_for("app2", "app1") is KeyMode.QKD_PREFERRED  # the default


def test_an_unknown_key_mode_is_refused_at_load_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "saes:\n  app1:\n    peers: [app2]\n    key_mode: hybrid-maybe\n"
        "  app2:\n    key_mode:\n      app1: qkd-sometimes\n"
    )
    with pytest.raises(PolicyError) as info:
        AccessPolicy.load(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert "line 4: saes.app1.key_mode: unknown key mode 'hybrid-maybe'" in text
    assert "line 7: saes.app2.key_mode.app1: unknown key mode 'qkd-sometimes'" in text
    assert "qkd-preferred" in text  # the known modes are listed


def test_origins_appear_as_key_extension_and_are_counted() -> None:
    book = OriginBook()
    keys = [
        StoredKey(
            f"00000000-0000-4000-8000-00000000000{i}", bytes([i]) * 32, 256, "a", ("b",), None
        )
        for i in range(3)
    ]
    book.record([keys[0].key_id], KeyOrigin(Origin.PQC, KeyMode.QKD_PREFERRED), None)
    book.record([keys[1].key_id], KeyOrigin(Origin.HYBRID, KeyMode.HYBRID_EITHER), None)
    ext = book.extensions([k.key_id for k in keys], KeyOrigin(Origin.QKD, None))
    body = json.loads(key_container_json(keys, ext))
    assert [e["key_extension"] for e in body["keys"]] == [
        {"origin": "pqc", "key_mode": "qkd-preferred"},
        {"origin": "hybrid", "key_mode": "hybrid-either"},
        {"origin": "qkd"},
    ]
    assert book.counts == {"pqc": 1, "hybrid": 1}
    plain = json.loads(key_container_json(keys))
    assert all("key_extension" not in e for e in plain["keys"])
