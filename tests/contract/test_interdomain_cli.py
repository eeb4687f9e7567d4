"""`qkdsdn controller interdomain view|reservations|peers` against three real controllers
(each with its real agents): plain lines into a pipe, `--json` as the API answers, and
what a peer token may not list."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from agents.notifications import AppRequest
from tests.contract.test_interdomain_controllers import (
    installed,
    run,
    three_controllers,
    three_domain_plan,
    until,
)
from tests.harness.agents import running_agents

REPO = Path(__file__).resolve().parents[2]


async def qkdsdn(*args: str) -> tuple[int, str, str]:
    """The CLI in a subprocess (stdout a pipe), without blocking the controllers' loop."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lab.cli",
        "controller",
        "interdomain",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_the_interdomain_cli_shows_view_reservations_and_peers_of_a_real_controller(
    tmp_path: Path,
) -> None:
    plan = three_domain_plan(tmp_path)
    secrets = tmp_path / "domain-secrets"

    async def scenario() -> None:
        async with running_agents(plan) as agents, three_controllers(plan, tmp_path) as domains:
            a, b = domains["A"], domains["B"]
            ok, message = agents["alphainner"].node.register_application(
                AppRequest(
                    "app-a",
                    ("app-c",),
                    plan.node("alphainner").qkdn_id,
                    plan.node("a_b").qkdn_id,
                    min_bandwidth=100,
                    max_bandwidth=200,
                )
            )
            assert ok, message
            await until(lambda: all(installed(d, "app-a") for d in domains.values()), "segments")
            [ident] = installed(a, "app-a")
            to_b = ("--url", b.url, "--token-file", str(secrets / "B-viewer"))

            code, out, err = await qkdsdn("reservations", *to_b)
            assert code == 0, err
            header, row = out.splitlines()
            assert header.split()[:3] == ["id", "origin", "apps"]
            assert row.startswith(ident) and "committed" in row
            assert "app-a → app-c" in row and "b_a → b_c" in row and "qkd-preferred" in row

            code, out, err = await qkdsdn("reservations", "--json", *to_b)
            assert code == 0, err
            [hold] = json.loads(out)
            assert (hold["id"], hold["state"], hold["origin"]) == (ident, "committed", "A")
            assert "path" not in hold

            code, out, err = await qkdsdn("view", *to_b)
            assert code == 0, err
            assert "# domain B: borders" in out and "# domain B: free key rate" in out
            lines = out.splitlines()
            assert any(line.split()[:2] == ["b_a", "A"] for line in lines)
            assert any(line.split()[:2] == ["b_c", "C"] for line in lines)
            assert any(line.startswith("app-c") and "C" in line for line in lines)
            assert "betamiddle" not in out  # internal: never in the view
            code, out, err = await qkdsdn("view", "--json", *to_b)
            assert json.loads(out)["domain"] == "B"

            to_a = ("--url", a.url, "--token-file", str(secrets / "A-operator"))
            await until(
                lambda: len(a.interdomain.service.peer_seen) == 2, "A sees B's and C's views"
            )
            code, out, err = await qkdsdn("peers", *to_a)
            assert code == 0, err
            header, *rows = out.splitlines()
            assert header.split()[:3] == ["peer", "state", "view"]
            by_name = {row.split()[0]: row for row in rows}
            assert set(by_name) == {"B", "C"}
            assert "up" in by_name["B"] and "a_b" in by_name["B"] and "app-b1" in by_name["B"]
            assert "(not a neighbour)" in by_name["C"] and "app-c" in by_name["C"]
            code, out, err = await qkdsdn("peers", "--json", *to_a)
            peers = {p["name"]: p for p in json.loads(out)}
            assert peers["B"]["neighbour"] and not peers["C"]["neighbour"]
            assert peers["B"]["reach"] == ["app-c"]

            # a peer domain's token may read the view, never the list of our peers
            b_token = tmp_path / "b-token"
            b_token.write_text(b.tokens["peer:A"] + "\n")
            code, out, err = await qkdsdn("peers", "--url", b.url, "--token-file", str(b_token))
            assert code != 0
            assert "a peer domain may not list this domain's peers" in err
            # a controller that is not there: said, not a traceback
            code, out, err = await qkdsdn("view", "--url", "http://127.0.0.1:9", *to_b[2:])
            assert code != 0 and "is not answering" in err and "Traceback" not in err

    run(scenario())
