"""Real processes: two domains meeting at two border sites (lab/topologies/two-domains-two-
borders.yaml). app-a (A) gets keys with app-b (B) through one site; that site's link in A is
cut (`lab fault cut`), and keys keep flowing through the other site: the controllers moved
the association, with nothing left reserved at the lost one."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lab.faults import inject
from lab.launcher import LabError, make_plan, start_supervised, stop, viewer_token
from lab.plan import LabPlan
from lab.restarts import RestartPolicy
from lab.scenarios.runner import sae_client
from lab.topology import load_topology, topology_path

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

START_S = 240.0
QKDSDN = (sys.executable, "-m", "lab.cli", "controller", "interdomain")
SITES = {"a_b1": "b_a1", "a_b2": "b_a2"}


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPlan]:
    state = tmp_path_factory.mktemp("two-borders")
    path = topology_path("two-domains-two-borders")
    for attempt in range(3):  # another twin on this machine may take a planned port first
        plan = make_plan(load_topology(path), path, state)
        try:
            start_supervised(plan, timeout=START_S, policy=RestartPolicy(limit=5, window_s=60.0))
            break
        except LabError as error:
            if not error.port_taken or attempt == 2:
                raise
    try:
        yield plan
    finally:
        stop(state)


def _holds(plan: LabPlan, domain: str) -> list[dict[str, Any]]:
    view = plan.view(domain)
    reply = httpx.get(
        f"{view.controller.url}/interdomain/reservations",
        headers={"Authorization": f"Bearer {viewer_token(view)}"},
        timeout=5.0,
    )
    assert reply.status_code == 200, reply.text
    holds = reply.json()
    assert isinstance(holds, list)
    return holds


def _committed(plan: LabPlan, domain: str) -> list[dict[str, Any]]:
    return [h for h in _holds(plan, domain) if h.get("state") == "committed"]


def _key_through(plan: LabPlan, deadline_s: float) -> tuple[str, bytes]:
    """One key app-a → app-b (retried while the path is being set up or moved), decrypted
    at app-b's KM: (key_ID, key)."""
    master, slave = sae_client(plan, "app-a"), sae_client(plan, "app-b")
    enc_url = f"{plan.node('a1').km_etsi014_url}/api/v1/keys/app-b/enc_keys"
    dec_url = f"{plan.node('b1').km_etsi014_url}/api/v1/keys/app-a/dec_keys"
    deadline = time.monotonic() + deadline_s
    last = ""
    with master, slave:
        while time.monotonic() < deadline:
            try:
                enc = master.get(enc_url, params={"number": 1}, timeout=30.0)
            except httpx.HTTPError as error:
                last = repr(error)
                continue
            if enc.status_code != 200:
                last = enc.text
                time.sleep(0.3)
                continue
            entry = enc.json()["keys"][0]
            dec = slave.post(dec_url, json={"key_IDs": [{"key_ID": entry["key_ID"]}]}, timeout=30)
            assert dec.status_code == 200, dec.text
            key = base64.b64decode(dec.json()["keys"][0]["key"])
            assert key == base64.b64decode(entry["key"])
            return entry["key_ID"], key
    raise AssertionError(f"no key app-a → app-b within {deadline_s} s: {last}")


def test_keys_keep_flowing_through_the_other_border_when_one_is_cut_off(twin: LabPlan) -> None:
    first_id, _ = _key_through(twin, 90.0)
    [first] = _committed(twin, "A")
    used = first["egress"]
    assert used in SITES
    [segment_b] = _committed(twin, "B")
    assert segment_b["id"] == first["id"] and segment_b["ingress"] == SITES[used]

    inject(twin, "cut", f"a1-{used}")  # A's only link to that site: its border is cut off
    other = next(b for b in SITES if b != used)
    deadline = time.monotonic() + 90.0
    while True:
        committed = _committed(twin, "A")
        if [h["egress"] for h in committed] == [other]:
            break
        assert time.monotonic() < deadline, f"A still holds {committed}"
        time.sleep(0.3)
    [moved] = committed
    assert moved["id"] != first["id"]
    second_id, _ = _key_through(twin, 90.0)
    assert second_id != first_id
    [segment_b] = _committed(twin, "B")
    assert (segment_b["id"], segment_b["ingress"]) == (moved["id"], SITES[other])
    for domain in "AB":  # the association through the lost site is released everywhere
        old = [h for h in _holds(twin, domain) if h["id"] == first["id"]]
        assert [h["state"] for h in old] == ["released"], domain

    # what an operator sees of it: `qkdsdn controller interdomain ... --domain A`
    rows = _cli(twin, "reservations", "--domain", "A").splitlines()[1:]
    states = {row.split()[0]: row for row in rows}
    assert "released" in states[first["id"]] and f"app-a → {used}" in states[first["id"]]
    assert "committed" in states[moved["id"]] and f"app-a → {other}" in states[moved["id"]]
    peers = _cli(twin, "peers", "--domain", "A").splitlines()
    assert peers[1].split()[:2] == ["B", "up"]
    assert f"{used}|{SITES[used]}" in peers[1] and f"{other}|{SITES[other]}" in peers[1]
    view = _cli(twin, "view", "--domain", "B")
    lines = [line.split() for line in view.splitlines()]
    assert ["b_a1", "A", "a_b1"] in lines and ["b_a2", "A", "a_b2"] in lines
    assert "# domain B: free key rate" in view and "b1" not in {w for line in lines for w in line}


def _cli(plan: LabPlan, *args: str) -> str:
    done = subprocess.run(
        [*QKDSDN, *args, "--state-dir", plan.state_dir],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_asks_which_domain_of_a_twin_of_several(twin: LabPlan) -> None:
    done = subprocess.run(
        [*QKDSDN, "peers", "--state-dir", twin.state_dir],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "is a twin of several domains: pass --domain (A, B)" in done.stderr
