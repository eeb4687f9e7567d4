"""The controller API's roles: which call needs which role, and how a credential is judged."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import config as controller_config
from controller.api_token import (
    ApiRole,
    ApiTokens,
    Caller,
    Refusal,
    TokenError,
    check_request,
    required_role,
)


@pytest.fixture
def tokens(tmp_path: Path) -> ApiTokens:
    files = {}
    for role in ApiRole:
        path = tmp_path / f"{role.label}.token"
        path.write_text(f"{role.label}-secret-0123456789\n")
        files[role] = path
    return ApiTokens.from_files(files)


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/intents", ApiRole.VIEWER),
        ("HEAD", "/status", ApiRole.VIEWER),
        ("POST", "/admit", ApiRole.VIEWER),
        ("POST", "/intents", ApiRole.OPERATOR),
        ("DELETE", "/intents/abc", ApiRole.OPERATOR),
        ("PUT", "/policy", ApiRole.ADMIN),
        ("POST", "/anything-new", ApiRole.ADMIN),
    ],
)
def test_each_call_needs_its_role(method: str, path: str, role: ApiRole) -> None:
    assert required_role(method, path) is role


def test_a_credential_is_judged_401_unknown_403_too_low(tokens: ApiTokens) -> None:
    assert check_request("GET", "/intents", None, tokens) == Refusal(
        401, "no credential: send Authorization: Bearer <token>"
    )
    assert isinstance(check_request("GET", "/x", "Basic abc", tokens), Refusal)
    unknown = check_request("GET", "/x", "Bearer not-a-token-of-ours", tokens)
    assert isinstance(unknown, Refusal) and unknown.status == 401
    low = check_request("DELETE", "/intents/1", "Bearer viewer-secret-0123456789", tokens)
    assert isinstance(low, Refusal) and low.status == 403
    assert "viewer" in low.detail and "operator" in low.detail
    ok = check_request("DELETE", "/intents/1", "Bearer admin-secret-0123456789", tokens)
    assert ok == Caller("token:admin", ApiRole.ADMIN)
    assert "secret" not in repr(tokens)


def test_one_token_for_two_roles_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("x" * 20)
    with pytest.raises(TokenError, match="each role"):
        ApiTokens.from_files({ApiRole.VIEWER: path, ApiRole.ADMIN: tmp_path / "t"})
    with pytest.raises(ValueError, match="unknown role"):
        ApiRole.named("root")


def test_controller_yaml_names_a_bad_api_tokens_entry(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "v").write_text("v" * 20)
    text = (
        "listen: {api: '127.0.0.1:8500'}\n"
        "netconf: {username: u, password_file: pw}\n"
        "api_tokens: {viewer: v, root: v, admin: missing}\n"
        "audit_log: audit/audit.jsonl\n"
    )
    (tmp_path / "controller.yaml").write_text(text)
    with pytest.raises(controller_config.ConfigError) as caught:
        controller_config.load(tmp_path / "controller.yaml", env={})
    message = str(caught.value)
    assert "api_tokens.root" in message and "api_tokens.admin" in message
    (tmp_path / "controller.yaml").write_text(text.replace("root: v, admin: missing", "admin: v"))
    with pytest.raises(controller_config.ConfigError, match="own token file"):
        controller_config.load(tmp_path / "controller.yaml", env={})
    (tmp_path / "controller.yaml").write_text(text.replace(", root: v, admin: missing", ""))
    loaded = controller_config.load(tmp_path / "controller.yaml", env={})
    assert loaded.api_tokens == {"viewer": (tmp_path / "v").resolve()}
    assert loaded.audit_log == (tmp_path / "audit" / "audit.jsonl").resolve()
