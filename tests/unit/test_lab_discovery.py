"""`lab up` is ready only once the controller has discovered every node and PHYS link."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lab.launcher import LabError, discovery_pending, wait_discovered
from lab.plan import LabPlan
from tests.harness.agents import make_test_plan


def _plan(tmp_path: Path) -> LabPlan:
    return make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])


def _topology(plan: LabPlan, available: int, links: int) -> dict[str, Any]:
    return {
        "devices": [
            {"name": n.name, "qkdn_id": n.qkdn_id, "available": i < available}
            for i, n in enumerate(plan.nodes)
        ],
        "links": [{"qkdl_id": link.qkdl_id} for link in plan.links[:links]],
    }


def test_discovery_is_pending_until_every_node_and_link_is_known(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert discovery_pending(plan, _topology(plan, 1, 0)) == ["b", "c", "links: 0 of 2"]
    assert discovery_pending(plan, _topology(plan, 3, 1)) == ["links: 1 of 2"]
    assert discovery_pending(plan, _topology(plan, 3, 2)) == []
    assert discovery_pending(plan, {"devices": "nonsense"}) == ["a", "b", "c", "links: 0 of 2"]


class _Controller(BaseHTTPRequestHandler):
    answers: ClassVar[list[dict[str, Any]]] = []
    asked: ClassVar[int] = 0

    def do_GET(self) -> None:
        cls = type(self)
        body = json.dumps(cls.answers[min(cls.asked, len(cls.answers) - 1)]).encode()
        cls.asked += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serving(plan: LabPlan, answers: list[dict[str, Any]]) -> tuple[LabPlan, ThreadingHTTPServer]:
    handler = type("Handler", (_Controller,), {"answers": answers, "asked": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    return replace(plan, controller=replace(plan.controller, api_port=port)), server


def test_readiness_waits_for_the_controller_to_discover_the_whole_network(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    answers = [_topology(plan, 0, 0), _topology(plan, 2, 1), _topology(plan, 3, 2)]
    plan, server = _serving(plan, answers)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_discovered(plan, 30.0, alive)
        handler: Any = server.RequestHandlerClass
        assert handler.asked >= 3  # asked again until the third answer, the complete one
    finally:
        alive.kill()
        alive.wait()
        server.shutdown()


def test_readiness_names_what_the_controller_never_discovered(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    plan, server = _serving(plan, [_topology(plan, 2, 2)])
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(LabError, match="not discovered after 1 s: c"):
            wait_discovered(plan, 1.0, alive)
    finally:
        alive.kill()
        alive.wait()
        server.shutdown()
