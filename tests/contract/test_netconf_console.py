"""The agent driven by the `netconf-console2` command (an independent NETCONF client)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from tests.harness.netconf import (
    NODE_ID,
    NS,
    netconf_console,
    running_agent,
)
from tests.harness.netconf import (
    netconf_console_output as _console,
)


def _documents(output: str) -> list[etree._Element]:
    """netconf-console prints one XML document per reply, each with its declaration."""
    parts = [part for part in output.split("<?xml") if part.strip()]
    return [etree.fromstring(("<?xml" + part).encode()) for part in parts]


def _texts(element: etree._Element, local: str) -> list[str]:
    return [(e.text or "") for e in element.iter(f"{{{NS}}}{local}")]


def test_console_get_edit_config_and_filtered_get_config(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        (got,) = _documents(_console(agent, "--get"))
        assert _texts(got, "qkdn_id") == [NODE_ID]
        assert _texts(got, "qkdn_status")[0].endswith(":OPERATING")

        edit = tmp_path / "edit.xml"
        edit.write_text(
            f'<qkd_node xmlns="{NS}"><qkdn_location_id>room-2</qkdn_location_id></qkd_node>'
        )
        (ok,) = _documents(_console(agent, "--edit-config", str(edit)))
        assert etree.QName(ok).localname == "ok"

        (filtered,) = _documents(
            _console(
                agent, "--get-config", "--ns", f"q={NS}", "--filter", "/q:qkd_node/qkdn_location_id"
            )
        )
        assert _texts(filtered, "qkdn_location_id") == ["room-2"]
        assert _texts(filtered, "qkdn_id") == []


def test_console_invalid_edit_reports_the_rpc_error(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        edit = tmp_path / "bad.xml"
        edit.write_text(f'<qkd_node xmlns="{NS}"><qkdn_id>not-a-uuid</qkdn_id></qkd_node>')
        result = netconf_console(agent, "--edit-config", str(edit))
        assert "invalid-value" in result.stdout + result.stderr
        (after,) = _documents(_console(agent, "--get-config"))
        assert _texts(after, "qkdn_id") == [NODE_ID]


def test_console_interactive_session_through_stdin(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        output = _console(
            agent,
            "--interactive",
            stdin="lock --db candidate\nget-config --db candidate\nunlock --db candidate\nget\n",
        )
        replies = _documents(output)
        assert [etree.QName(r).localname for r in replies] == ["ok", "data", "ok", "data"]
        assert _texts(replies[1], "qkdn_id") == [NODE_ID]
        assert _texts(replies[3], "qkdn_status")
