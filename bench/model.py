"""Parsing a node's tree through the generated model against the hand parsers it replaced.

    .venv/bin/python bench/model.py [--rounds 15] [--apps 1,20] [--json FILE]

Times, in the same run and interleaved round by round, the controller's `parse_node` (NETCONF
XML of a <get> reply) and the key manager's `parse_node_config` (the RFC 7951 JSON the agent
pushes after a commit) as they are now (yang/model.py) and as they were before the model
(the hand parsers, loaded from git at BASELINE, never copied into the tree). Inputs: the
golden tree (tests/golden/qkd-node-state.xml: one application, two links) and the same tree
grown to N applications, each with its VIRT link. Both versions must give the same values.

For scale it also times what the edit path around the parse costs: libyang's full
validation of the same configuration (`Schema.check_config_xml`, run on every edit-config),
and the agent's own parse of the new running (`QkdNode.from_json`, once per revision).
Figures: CPU time of this process per call, best of the rounds, the ratio of the bests, of the
medians, and the median of the rounds' own ratios (paired: the two samples of a round are taken
back to back, so load that drifts between rounds cancels).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path and its controller.py would shadow the
# `controller` package: the project root must come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import dataclasses
import enum
import functools
import json
import statistics
import subprocess
import time
import types
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from controller import nodedata
from km import associations
from yang.model import QkdApp, QkdLink, QkdNode
from yang.schema import Schema

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "8f28814"  # the last commit with the hand parsers
GOLDEN = ROOT / "tests" / "golden" / "qkd-node-state.xml"
GOLDEN_CONFIG = ROOT / "tests" / "golden" / "qkd-node-config.xml"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def baseline_module(path: str, name: str) -> types.ModuleType:
    """`path` as it was at BASELINE, loaded as module `name` (imports resolve to today's tree)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{BASELINE}:{path}"
    sys.modules[name] = module  # dataclasses look their module up while building classes
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def grown(node: QkdNode, apps: int) -> QkdNode:
    """The golden tree with `apps` applications, each backed by its own VIRT link."""
    [app] = node.qkd_applications.qkd_app
    virt = next(link for link in node.qkd_links.qkd_link if link.virt_bandwidth is not None)
    phys = tuple(link for link in node.qkd_links.qkd_link if link is not virt)
    new_apps: list[QkdApp] = []
    new_links: list[QkdLink] = []
    for index in range(apps):
        suffix = f"{index:012x}"
        link_id = virt.qkdl_id[:-12] + suffix
        app_id = app.app_id[:-12] + suffix
        new_links.append(replace(virt, qkdl_id=link_id, qkdl_applications=(app_id,)))
        new_apps.append(replace(app, app_id=app_id, backing_qkdl_id=(link_id,)))
    return replace(
        node,
        qkd_applications=replace(node.qkd_applications, qkd_app=tuple(new_apps)),
        qkd_links=replace(node.qkd_links, qkd_link=phys + tuple(new_links)),
    )


def plain(value: Any) -> Any:
    """Values compared across the two versions: dataclasses as dicts, enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def shared(old: Any, new: Any) -> Any:
    """`new` cut down to what `old` has: fields added since the baseline (the key manager's
    relay address, a VIRT link's hop relays) have nothing to compare against."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: shared(old[k], new.get(k)) for k in old}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [shared(o, n) for o, n in zip(old, new, strict=True)]
    return new


def km_values(view: Any) -> Any:
    # The hand parser's VirtLink had no ends and kept an unset bandwidth as None.
    return plain(view.associations), sorted(view.virt_links)


def timed(call: Callable[[], object], number: int) -> float:
    # CPU time of this process: other processes on a busy machine do not count.
    start = time.process_time()
    for _ in range(number):
        call()
    return (time.process_time() - start) / number


def compare(
    label: str, before: Callable[[], object], after: Callable[[], object], rounds: int
) -> dict[str, float]:
    number = max(1, int(0.02 / max(timed(before, 3), 1e-7)))  # ~20 ms per sample
    olds: list[float] = []
    news: list[float] = []
    for index in range(rounds):  # interleaved, alternating which goes first
        pair = [(olds, before), (news, after)]
        for samples, call in pair if index % 2 == 0 else reversed(pair):
            samples.append(timed(call, number))
    row = {
        "baseline_us": min(olds) * 1e6,
        "model_us": min(news) * 1e6,
        "ratio_min": min(news) / min(olds),
        "ratio_median": statistics.median(news) / statistics.median(olds),
        # Each round's two samples are taken back to back: their ratio cancels the load
        # drifting between rounds (the robust figure on a machine shared with others).
        "ratio_paired": statistics.median(n / o for n, o in zip(news, olds, strict=True)),
    }
    print(
        f"{label:<34} {row['baseline_us']:>10.1f} {row['model_us']:>10.1f}"
        f" {row['ratio_min']:>8.2f} {row['ratio_median']:>8.2f} {row['ratio_paired']:>8.2f}"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--apps", default="1,20", help="comma-separated application counts")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)

    old_nodedata = baseline_module("controller/nodedata.py", "baseline_nodedata")
    old_associations = baseline_module("km/associations.py", "baseline_associations")
    schema = Schema.default()
    golden = QkdNode.from_xml(GOLDEN.read_text(encoding="utf-8"))
    golden_config = QkdNode.from_xml(GOLDEN_CONFIG.read_text(encoding="utf-8"))
    figures: dict[str, dict[str, float]] = {}
    print(f"baseline: hand parsers at {BASELINE}; µs per call (best of {args.rounds} rounds)")
    print(
        f"{'case':<34} {'baseline':>10} {'model':>10} {'min x':>8} {'median x':>8} {'paired x':>8}"
    )
    for apps in (int(n) for n in args.apps.split(",")):
        state = schema.json_to_xml(grown(golden, apps).to_json())
        reply = f'<rpc-reply xmlns="{NC}"><data>{state}</data></rpc-reply>'
        config_doc = grown(golden_config, apps).to_json()  # the agent pushes config only
        config_xml = schema.json_to_xml(config_doc)
        text = json.dumps(config_doc)
        old_values = plain(old_nodedata.parse_node(reply))
        if old_values != shared(old_values, plain(nodedata.parse_node(reply))):
            raise SystemExit(f"parse_node differs from the baseline ({apps} apps)")
        if km_values(old_associations.parse_node_config(text)) != km_values(
            associations.parse_node_config(text)
        ):
            raise SystemExit(f"parse_node_config differs from the baseline ({apps} apps)")
        figures[f"controller parse_node, {apps} apps"] = compare(
            f"controller parse_node, {apps} apps",
            functools.partial(old_nodedata.parse_node, reply),
            functools.partial(nodedata.parse_node, reply),
            args.rounds,
        )
        figures[f"km parse_node_config, {apps} apps"] = compare(
            f"km parse_node_config, {apps} apps",
            functools.partial(old_associations.parse_node_config, text),
            functools.partial(associations.parse_node_config, text),
            args.rounds,
        )
        # The agent parses each new running once (veto, reused by apply and every <get>).
        agent_parse = functools.partial(QkdNode.from_json, config_doc)
        agent = min(timed(agent_parse, 20) for _ in range(5))
        figures[f"agent QkdNode.from_json, {apps} apps"] = {"us": agent * 1e6}
        print(f"{'  (agent from_json, per revision)':<34} {agent * 1e6:>21.1f}")
        validate = functools.partial(schema.check_config_xml, config_xml)
        check = min(timed(validate, 20) for _ in range(5))
        figures[f"libyang check_config_xml, {apps} apps"] = {"us": check * 1e6}
        print(f"{'  (libyang check_config_xml)':<34} {check * 1e6:>21.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
