"""agent.yaml accounts (NACM groups, password hashes, keys) and the RESTCONF listener, as the
lab writes them and as the loader checks them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from agents import config as agent_config
from agents.access.users import hash_password
from lab.configs import write_process_configs
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan


def test_the_lab_gives_the_controller_its_group_and_an_admin_account(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    create_lab_pki(tmp_path, ["a", "b"], [])
    stored = hash_password("admin-secret", n=2**10)
    plan = dataclasses.replace(
        plan,
        credentials=dataclasses.replace(
            plan.credentials, admin_username="admin", admin_password_hash=stored
        ),
        nodes=tuple(dataclasses.replace(node, restconf_port=9443) for node in plan.nodes),
    )
    files = write_process_configs(plan)
    agent = agent_config.load(files["agent-a"], env={})
    assert agent.netconf.group == "controller"
    (admin,) = agent.netconf.users
    assert (admin.name, admin.group, admin.password_hash) == ("admin", "admin", stored)
    assert "admin-secret" not in files["agent-a"].read_text()
    assert agent.listen.restconf is not None and agent.listen.restconf.port == 9443


def _write(tmp_path: Path, users: object, restconf: object = None) -> Path:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    create_lab_pki(tmp_path, ["a", "b"], [])
    path = write_process_configs(plan)["agent-a"]
    data = yaml.safe_load(path.read_text())
    data["netconf"]["users"] = users
    if restconf is not None:
        data["listen"]["restconf"] = restconf
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("users", "restconf", "named"),
    [
        ([{"name": "x", "group": "admin", "password_hash": "hunter2"}], None, "password_hash"),
        ([{"name": "x", "group": "wizard", "password_hash": None}], None, "group"),
        ([{"name": "x", "group": "monitor"}], None, "a user needs a password_hash"),
        ([{"name": "qkdsdn", "password_hash": hash_password("p", n=2**10)}], None, "twice"),
        ([], "not-an-address", "listen.restconf"),
    ],
)
def test_bad_accounts_and_listeners_are_named(
    tmp_path: Path, users: object, restconf: object, named: str
) -> None:
    path = _write(tmp_path, users, restconf)
    with pytest.raises(agent_config.ConfigError, match=named):
        agent_config.load(path, env={})
