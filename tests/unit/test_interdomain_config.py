"""The `domain` section of controller.yaml, and the `peer` role: /interdomain/* only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api_token import ApiRole, ApiToken, ApiTokens, Caller, Refusal, check_request
from controller.config import ConfigError, load

PEER = "peer-B-secret-0123456789"
VIEWER = "viewer-secret-0123456789"
ADMIN = "admin-secret-0123456789"


def write_config(tmp_path: Path, domain: Any) -> Path:
    (tmp_path / "pw").write_text("x")
    for name in ("to-b", "from-b"):
        (tmp_path / name).write_text(f"{name}-token-0123456789")
    data = {
        "listen": {"api": "127.0.0.1:8600"},
        "netconf": {"username": "u", "password_file": "pw"},
        "nodes": [
            {"name": "a1", "netconf": "127.0.0.1:8301"},
            {"name": "a_b", "netconf": "127.0.0.1:8302"},
        ],
        "domain": domain,
    }
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_domain_section_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "name": "A",
            "borders": {"a_b": "B"},
            "saes": {"app-a": "a1"},
            "peers": [
                {
                    "name": "B",
                    "url": "http://127.0.0.1:8610/",
                    "token_file": "to-b",
                    "accept_token_file": "from-b",
                }
            ],
        },
    )
    domain = load(path, env={}).domain
    assert domain is not None
    assert (domain.name, dict(domain.borders), dict(domain.saes)) == (
        "A",
        {"a_b": "B"},
        {"app-a": "a1"},
    )
    [peer] = domain.peers
    assert peer.url == "http://127.0.0.1:8610"
    assert peer.token_file == tmp_path / "to-b"
    assert (peer.allow_saes, peer.rate_cap_bps, peer.key_modes) == (
        ("*",),
        1_000_000,
        ("qkd-only", "qkd-preferred"),
    )
    assert (domain.reservation_ttl_s, domain.peer_timeout_s, domain.view_interval_s) == (10, 3, 2)


def test_a_file_without_a_domain_section_is_one_domain(tmp_path: Path) -> None:
    assert load(write_config(tmp_path, None), env={}).domain is None


def test_every_bad_domain_field_is_named(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "name": "A",
            "borders": {"a9": "B", "a_b": "Q"},
            "saes": {"app-a": "nowhere"},
            "peers": [
                {
                    "name": "B",
                    "url": "ftp://x",
                    "token_file": "missing",
                    "accept_token_file": "from-b",
                    "key_modes": ["qkd-maybe"],
                    "rate_cap_bps": -1,
                }
            ],
            "reservation_ttl_s": 0,
            "colour": "red",
        },
    )
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    text = str(caught.value)
    for field in (
        "domain.borders.a9: not one of the managed nodes",
        "domain.borders.a_b: peer domain Q is not in domain.peers",
        "domain.saes.app-a",
        "domain.peers[0].url",
        "domain.peers[0].token_file: no such file",
        "domain.peers[0].key_modes",
        "domain.peers[0].rate_cap_bps",
        "domain.reservation_ttl_s",
        "domain.colour: unknown field",
    ):
        assert field in text


@pytest.fixture
def tokens() -> ApiTokens:
    return ApiTokens(
        (
            (ApiToken(VIEWER.encode()), Caller("token:viewer", ApiRole.VIEWER)),
            (ApiToken(ADMIN.encode()), Caller("token:admin", ApiRole.ADMIN)),
        )
    ).with_peers({"B": ApiToken(PEER.encode())})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/interdomain/view"),
        ("GET", "/interdomain/reservations"),
        ("POST", "/interdomain/reservations"),
        ("POST", "/interdomain/reservations/x/commit"),
        ("DELETE", "/interdomain/reservations/x"),
    ],
)
def test_a_peer_token_may_call_every_interdomain_route(
    tokens: ApiTokens, method: str, path: str
) -> None:
    assert check_request(method, path, f"Bearer {PEER}", tokens) == Caller("peer:B", ApiRole.PEER)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/status"), ("GET", "/intents"), ("POST", "/intents")]
)
def test_a_peer_token_may_call_nothing_else(tokens: ApiTokens, method: str, path: str) -> None:
    refused = check_request(method, path, f"Bearer {PEER}", tokens)
    assert isinstance(refused, Refusal) and refused.status == 403
    assert "/interdomain/*" in refused.detail


def test_viewers_and_admins_only_read_the_view_and_the_reservations(tokens: ApiTokens) -> None:
    for token in (VIEWER, ADMIN):
        for path in ("/interdomain/view", "/interdomain/reservations"):
            assert isinstance(check_request("GET", path, f"Bearer {token}", tokens), Caller)
        for method, path in (
            ("POST", "/interdomain/reservations"),
            ("DELETE", "/interdomain/reservations/x"),
            ("POST", "/interdomain/reservations/x/commit"),
        ):
            refused = check_request(method, path, f"Bearer {token}", tokens)
            assert isinstance(refused, Refusal) and refused.status == 403
    assert check_request("GET", "/interdomain/view", "Bearer wrong-token-0123456789", tokens) == (
        Refusal(401, "unknown API token")
    )


def test_a_peer_token_equal_to_another_callers_is_refused(tokens: ApiTokens) -> None:
    with pytest.raises(ValueError, match="peer domain"):
        tokens.with_peers({"C": ApiToken(VIEWER.encode())})
