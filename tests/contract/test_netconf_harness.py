"""Tests of the NETCONF test harness (`tests.harness.netconf`) itself."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.harness.netconf import connect, running_agent, wait_until


def test_agent_starts_on_a_free_port_and_stops_releasing_it(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        port = agent.port
        assert port > 0
        with connect(agent) as session:
            assert session.connected
    # The port is free again: binding it must succeed.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_stop_closes_open_sessions(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        session = connect(agent)
        wait_until(lambda: agent.session_count() == 1, "the session to register")
    wait_until(lambda: not session.connected, "the client to see the session closed")
