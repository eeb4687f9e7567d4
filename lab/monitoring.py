"""Prometheus for a twin (`lab up --monitoring`): its scrape configuration, checked, and its argv.

`scrape_config` is pure: a job per part (agents, km, controller), one target per process
(labelled `process`, and `domain` in a twin of several domains: one Prometheus for every
operator's processes), scraped every SCRAPE_INTERVAL_S. `check_scrape_config` reads a file
back and names every bad field (file: field: why) before Prometheus is started with it.
Prometheus runs as one more process of the twin ("prometheus"), its data under
STATE_DIR/prometheus; the supervisor starts, restarts and stops it like the others.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from common.config import Address, ConfigError, Reader, parse_address
from lab.configs import CONTROLLER, agent_name, config_dir, km_name
from lab.plan import LabPlan

PROCESS = "prometheus"
SCRAPE_INTERVAL_S = 1.0
CONFIG_FILE = "prometheus.yml"
DASHBOARD = Path(__file__).parent / "dashboards" / "qkdsdn-overview.json"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_JOB_FIELDS = ("job_name", "metrics_path", "scheme", "scrape_interval", "static_configs")

Groups = Sequence[tuple[str, Sequence[str]]]  # (process name, the nodes it hosts)


class MonitoringError(RuntimeError):
    """Prometheus cannot be run for this twin; the message says why."""


def scrape_config(
    plan: LabPlan, agents: Groups, kms: Groups, interval_s: float = SCRAPE_INTERVAL_S
) -> dict[str, Any]:
    """The Prometheus configuration scraping every process of `plan` that serves /metrics."""
    jobs: list[dict[str, Any]] = []
    for job, groups, config_of in (
        ("agents", agents, agent_name),
        ("km", kms, km_name),
    ):
        targets = []
        for process, nodes in groups:
            port = plan.metrics_ports.get(config_of(nodes[0])) if nodes else None
            if port is not None:
                node = plan.node(nodes[0])
                address = Address(node.host, port)
                labels = {"process": process} | ({"domain": node.domain} if node.domain else {})
                targets.append({"targets": [str(address)], "labels": labels})
        if targets:
            jobs.append(_job(job, targets))
    controllers = []
    for process in plan.controller_processes():  # "controller", or one per domain
        port = plan.metrics_ports.get(process)
        if port is not None:
            view = plan.controller_view(process)
            address = Address(view.controller.host, port)
            labels = {"process": process} | (
                {"domain": process.removeprefix(f"{CONTROLLER}-")} if plan.domains else {}
            )
            controllers.append({"targets": [str(address)], "labels": labels})
    if controllers:
        jobs.append(_job("controller", controllers))
    interval = f"{round(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


def _job(name: str, static: list[dict[str, Any]]) -> dict[str, Any]:
    return {"job_name": name, "metrics_path": "/metrics", "static_configs": static}


def write_scrape_config(plan: LabPlan, agents: Groups, kms: Groups) -> Path:
    """STATE_DIR/config/prometheus.yml, checked as Prometheus will read it."""
    folder = config_dir(plan)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(scrape_config(plan, agents, kms), sort_keys=False))
    tmp.replace(path)
    check_scrape_config(path)
    return path


def check_scrape_config(path: Path) -> None:
    """Raises ConfigError naming the file and each bad field of a scrape configuration."""
    data = Reader.load_yaml(path, (), {})
    r = Reader(path)
    top = r.mapping(data, "", ("global", "scrape_configs"))
    settings = r.mapping(top.get("global"), "global", ("scrape_interval", "evaluation_interval"))
    for key in ("scrape_interval", "evaluation_interval"):
        _duration(r, settings, key, "global")
    names: set[str] = set()
    jobs = r.items(top, "scrape_configs", "")
    if not jobs:
        r.error("scrape_configs", "no job: Prometheus would scrape nothing")
    for where, item in jobs:
        job = r.mapping(item, where, _JOB_FIELDS)
        name = r.text(job, "job_name", where)
        if name in names:
            r.error(f"{where}.job_name", f"{name!r} appears twice")
        names.add(name)
        metrics_path = job.get("metrics_path", "/metrics")
        if not isinstance(metrics_path, str) or not metrics_path.startswith("/"):
            r.error(
                f"{where}.metrics_path", f"must be a path starting with /, not {metrics_path!r}"
            )
        if job.get("scheme", "http") not in ("http", "https"):
            r.error(f"{where}.scheme", f"must be http or https, not {job.get('scheme')!r}")
        _duration(r, job, "scrape_interval", where)
        for group_where, group in r.items(job, "static_configs", where):
            _targets(r, group_where, group)
    r.done()


def _duration(r: Reader, data: dict[str, Any], key: str, where: str) -> None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not _DURATION.match(value)):
        r.error(f"{where}.{key}", f"{value!r} is not a Prometheus duration (e.g. 1s, 500ms)")


def _targets(r: Reader, where: str, group: Any) -> None:
    data = r.mapping(group, where, ("targets", "labels"))
    targets = r.items(data, "targets", where)
    if not targets:
        r.error(f"{where}.targets", "missing (a list of host:port)")
    for target_where, target in targets:
        try:
            parse_address(str(target))
        except ValueError as error:
            r.error(target_where, str(error))
    labels = data.get("labels") or {}
    if not isinstance(labels, dict):
        r.error(f"{where}.labels", "must be a mapping of label names to values")
        return
    for name, value in labels.items():
        if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", str(name)) or not isinstance(value, str):
            r.error(
                f"{where}.labels.{name}", "a label is a name [a-zA-Z_][a-zA-Z0-9_]* and a string"
            )


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise MonitoringError(
            "--monitoring needs Prometheus: `apt-get install prometheus` (make setup does it)"
        )
    return found


def prometheus_argv(plan: LabPlan, config: Path, binary: str) -> tuple[str, ...]:
    """Prometheus on the controller's host at `plan.prometheus_port`, data in the state dir."""
    data = Path(plan.state_dir) / "prometheus"
    data.mkdir(parents=True, exist_ok=True)
    listen = Address(plan.controller.host, plan.prometheus_port)
    return (
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={listen}",
        "--storage.tsdb.retention.time=7d",
        "--log.level=warn",
    )


def prometheus_url(plan: LabPlan) -> str:
    return Address(plan.controller.host, plan.prometheus_port).url("http")


__all__ = [
    "DASHBOARD",
    "ConfigError",
    "MonitoringError",
    "check_scrape_config",
    "prometheus_argv",
    "scrape_config",
    "write_scrape_config",
]
