"""`qkdsdn controller status ...`: which controller the CLI talks to (--url, --state-dir...)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller import cli
from lab.configs import write_process_configs
from tests.harness.agents import make_test_plan


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["status", *argv])


def test_state_dir_config_and_plan_all_lead_to_the_configured_api(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a"], [])
    files = write_process_configs(plan)
    expected = f"http://127.0.0.1:{plan.controller.api_port}"
    assert cli._target_of(_args("--state-dir", str(tmp_path)))[0] == expected
    assert cli._target_of(_args("--config", str(files["controller"])))[0] == expected
    assert cli._target_of(_args("--plan", str(tmp_path / "plan.json")))[0] == expected


def test_url_names_a_controller_elsewhere_and_excludes_the_others(tmp_path: Path) -> None:
    assert cli._target_of(_args("--url", "http://[fd00::9]:8500/"))[0] == "http://[fd00::9]:8500"
    with pytest.raises(SystemExit):
        _args("--url", "http://x:1", "--state-dir", str(tmp_path))


def test_a_state_dir_without_a_controller_configuration_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no controller configuration at .*controller\.yaml"):
        cli._target_of(_args("--state-dir", str(tmp_path)))[0]


def test_a_wildcard_api_address_is_reached_on_loopback(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a"], [])
    files = write_process_configs(plan, listen="0.0.0.0")
    port = plan.controller.api_port
    assert (
        cli._target_of(_args("--config", str(files["controller"])))[0] == f"http://127.0.0.1:{port}"
    )


def test_the_cli_uses_the_operator_token_unless_given_a_role(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a"], [])
    write_process_configs(plan)
    state = ("--state-dir", str(tmp_path))
    secrets = tmp_path.resolve() / "secrets"
    assert cli._target_of(_args(*state))[1] == secrets / "controller-token"
    assert cli._target_of(_args(*state, "--role", "viewer"))[1] == (
        secrets / "controller-token-viewer"
    )
    assert cli._target_of(_args(*state, "--role", "admin"))[1] == secrets / "controller-token-admin"
    with pytest.raises(SystemExit):
        _args(*state, "--role", "root")
    with pytest.raises(SystemExit):
        _args(*state, "--role", "admin", "--token-file", "x")
