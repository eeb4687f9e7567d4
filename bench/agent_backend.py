"""CPU cost of one agent's node backend and datastore per commit and per <get>, in process.

    .venv/bin/python bench/agent_backend.py [--apps 20] [--rounds 7] [--json FILE]

One node of an 8-node ring (a test plan, PKI included) with its real `Datastore` (libyang,
persistence off) and `QkdNode`, carrying `--apps` associations (each a VIRT link through the
node and an app, as the controller installs them). Times, in CPU µs per call of this process
(best of the rounds): the backend's `veto` + `apply` of one running, the backend's
`operational` (the state leaves of one <get>), a datastore edit + commit of one more
association (and its removal), and the datastore's whole `<get>` (running merged with state,
serialized). Compare trees by running it with each on PYTHONPATH, one after the other.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable

from lxml import etree

from agents.datastore import Datastore
from agents.datastore.store import DatastoreName
from agents.node import QkdNode, Site
from tests.harness.agents import make_test_plan
from tests.harness.configs import agent_config_of
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES = "urn:etsi:qkd:yang:etsi-qkd-node-types"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def cpu_us(call: Callable[[], object], number: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            call()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def association(index: int, prev: str, nxt: str, delete: bool) -> etree._Element:
    link_id, app_id = str(uuid.UUID(int=index * 2 + 1)), str(uuid.UUID(int=index * 2 + 2))
    if delete:
        op = f' xmlns:nc="{NC}" nc:operation="delete"'
        body = (
            f"<qkd_links><qkd_link{op}><qkdl_id>{link_id}</qkdl_id></qkd_link></qkd_links>"
            f"<qkd_applications><qkd_app{op}><app_id>{app_id}</app_id></qkd_app>"
            "</qkd_applications>"
        )
    else:
        body = (
            f"<qkd_links><qkd_link><qkdl_id>{link_id}</qkdl_id>"
            f'<qkdl_type xmlns:t="{TYPES}">t:VIRT</qkdl_type>'
            f"<virt_prev_hop>{prev}</virt_prev_hop><virt_next_hop>{nxt}</virt_next_hop>"
            "<virt_bandwidth>1000</virt_bandwidth></qkd_link></qkd_links>"
            f"<qkd_applications><qkd_app><app_id>{app_id}</app_id>"
            f'<app_type xmlns:t="{TYPES}">t:INTERNAL</app_type><server_app_id>a</server_app_id>'
            f"<client_app_id>b</client_app_id><backing_qkdl_id>{link_id}</backing_qkdl_id>"
            "</qkd_app></qkd_applications>"
        )
    return etree.fromstring(f'<config><qkd_node xmlns="{NS}">{body}</qkd_node></config>')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    names = [f"n{i}" for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_test_plan(
            Path(tmp), names, [(a, names[(i + 1) % 8]) for i, a in enumerate(names)]
        )
        schema = Schema.default()
        node = QkdNode(agent_config_of(plan, "n1"), Site())
        initial = schema.json_to_xml(node.initial_running())
        store = Datastore(schema, node, None, initial, durable=False)
        node.start(store.running_json())
        prev, nxt = plan.node("n0").qkdn_id, plan.node("n2").qkdn_id
        for index in range(args.apps):
            store.edit(DatastoreName.RUNNING, association(index, prev, nxt, False))
        text = json.dumps(store.running_json())
        vetoed, applied = json.loads(text), json.loads(text)  # decoded apart, as the datastore does

        def veto_apply() -> None:
            node.veto(vetoed)
            node.apply(applied)

        extra = [10_000]

        def edit_commit() -> None:
            store.edit(DatastoreName.RUNNING, association(extra[0], prev, nxt, False))
            store.edit(DatastoreName.RUNNING, association(extra[0], prev, nxt, True))
            extra[0] += 1

        figures = {
            "backend veto+apply": cpu_us(veto_apply, 50, args.rounds),
            "backend operational": cpu_us(lambda: node.operational(vetoed), 50, args.rounds),
            "datastore edit+commit": cpu_us(edit_commit, 10, args.rounds) / 2,
            "datastore <get>": cpu_us(store.operational_xml, 50, args.rounds),
        }
    print(f"one node, {args.apps} associations; CPU µs per call (best of {args.rounds} rounds)")
    for name, value in figures.items():
        print(f"  {name:<24} {value:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
