"""`qkdsdn agent run`: the agents of a lab plan, many nodes in one asyncio process.

Per node: a NETCONF server (asyncssh) on `netconf_port` over the node's datastore, and one
grpc.aio server on `agent_grpc_port` with KeyDelivery (ETSI 004 module side), NodeLink and
AgentControl. Running is persisted in STATE_DIR/agents/<node>/running.xml. Tests and other
parts use `running_agents(plan)` to host agents in their own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agents import control_service, etsi004_service, node_link_service
from agents.datastore import Datastore, DatastoreError
from agents.grpc_auth import agent_grpc_server
from agents.netconf.server import NetconfCredentials, NetconfServer
from agents.node import NodeSettings, NodeStatus, QkdNode, Site
from common.roles import TlsMaterial, server_credentials
from common.tracing import Tracer
from lab.plan import HOST, LabPlan
from yang.schema import Schema

log = logging.getLogger(__name__)

GRPC_STOP_GRACE_S = 0.5


@dataclass
class AgentHandle:
    """One hosted agent: its node, datastore and servers (ports as bound)."""

    node: QkdNode
    datastore: Datastore
    netconf: NetconfServer
    grpc_server: grpc.aio.Server
    netconf_port: int
    grpc_port: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopped: bool = False

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    async def stop_servers(self) -> None:
        """Stops listening (NETCONF sessions close, gRPC calls end); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.node.feed.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.netconf.stop()
        await self.grpc_server.stop(GRPC_STOP_GRACE_S)

    async def stop_node(self) -> None:
        """A crash of the node: modules down (peers notice), then the servers go."""
        self.node.stop()
        await self.stop_servers()


def running_path(plan: LabPlan, name: str) -> Path:
    return Path(plan.state_dir) / "agents" / name / "running.xml"


def credentials(plan: LabPlan) -> NetconfCredentials:
    creds = plan.credentials
    return NetconfCredentials(
        username=creds.netconf_username,
        password=Path(creds.password_file).read_text(encoding="utf-8").strip(),
        authorized_keys=tuple(
            Path(f"{creds.client_key}.pub").read_text(encoding="utf-8").splitlines()
        ),
        host_key_path=Path(creds.host_key),
    )


def _datastore(
    schema: Schema, node: QkdNode, persist: Path | None, durable: bool = True
) -> Datastore:
    """The node's datastore; a persisted running the node cannot use is set aside."""
    initial = schema.json_to_xml(node.initial_running())
    if persist is None:
        return Datastore(schema, node, None, initial)
    try:
        store = Datastore(schema, node, persist, initial, durable=durable)
        reason = node.veto(store.running_json())
    except DatastoreError as error:
        reason = str(error)
    if reason is None:
        return store
    stale = persist.with_suffix(".stale.xml")
    log.warning("%s: persisted running refused (%s); moved to %s", node.name, reason, stale)
    persist.replace(stale)
    return Datastore(schema, node, persist, initial, durable=durable)


def agent_tls(plan: LabPlan, name: str) -> TlsMaterial:
    """The agent's gRPC server certificate, its key and the CA that signs its callers."""
    cert, key = plan.agent_certs.get(name, ("", ""))
    if not cert:
        raise ValueError(f"the lab plan has no gRPC certificate for the agent of {name!r}")
    return TlsMaterial.from_files(cert, key, plan.credentials.ca_cert)


async def start_agent(
    plan: LabPlan,
    name: str,
    site: Site,
    schema: Schema,
    *,
    settings: NodeSettings | None = None,
    persist: bool = True,
    durable: bool = True,
    plan_ports: bool = True,
    tracer: Tracer | None = None,
) -> AgentHandle:
    """Composes and starts the agent of node `name` (ports from the plan, or free ones).

    `persist` keeps running in STATE_DIR/agents/NAME/running.xml; `durable` also fsyncs it
    at every commit, so a commit survives a power loss, not only a restart of the agent."""
    node_plan = plan.node(name)
    tls = agent_tls(plan, name)  # gRPC takes mutual TLS; who may call what: agents/grpc_auth.py
    node = QkdNode(plan, name, site, settings=settings, tracer=tracer)
    path = running_path(plan, name) if persist else None
    store = _datastore(schema, node, path, durable)
    node.start(store.running_json())
    netconf = NetconfServer(
        store, credentials(plan), HOST, node_plan.netconf_port if plan_ports else 0
    )
    node.set_publisher(netconf.publish)
    server = agent_grpc_server(name)
    handle_box: list[AgentHandle] = []

    async def on_stop() -> None:
        await handle_box[0].stop_servers()

    etsi004_service.add_to_server(etsi004_service.KeyDeliveryService(node), server)
    node_link_service.add_to_server(node_link_service.NodeLinkService(node), server)
    control_service.add_to_server(control_service.AgentControlService(node, on_stop), server)
    port = server.add_secure_port(
        f"{HOST}:{node_plan.agent_grpc_port if plan_ports else 0}", server_credentials(tls)
    )
    if port == 0:
        raise OSError(f"{name}: cannot listen on {HOST}:{node_plan.agent_grpc_port} (gRPC)")
    await netconf.start()
    try:
        await server.start()
    except BaseException:
        await netconf.stop()
        raise
    handle = AgentHandle(node, store, netconf, server, netconf.port, port)
    handle_box.append(handle)
    handle.tasks.append(asyncio.get_running_loop().create_task(node.run_perf_updates()))
    return handle


@contextlib.asynccontextmanager
async def running_agents(
    plan: LabPlan,
    nodes: Sequence[str] | None = None,
    *,
    settings: NodeSettings | None = None,
    persist: bool = True,
    durable: bool = True,
    plan_ports: bool = True,
    site: Site | None = None,
    tracer: Tracer | None = None,
) -> AsyncIterator[dict[str, AgentHandle]]:
    """The agents of `nodes` (default: all) for the duration of the block, by node name."""
    names = list(dict.fromkeys(nodes)) if nodes is not None else [n.name for n in plan.nodes]
    for name in names:
        plan.node(name)  # unknown names fail before anything starts
    schema = Schema.default()
    site = site or Site()
    handles: dict[str, AgentHandle] = {}
    try:
        for name in names:
            handles[name] = await start_agent(
                plan,
                name,
                site,
                schema,
                settings=settings,
                persist=persist,
                durable=durable,
                plan_ports=plan_ports,
                tracer=tracer,
            )
        yield handles
    finally:
        await asyncio.gather(
            *(handle.stop_servers() for handle in handles.values()), return_exceptions=True
        )


# ---- command line ------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="host the agents of a lab plan")
    run.add_argument("--plan", type=Path, required=True, help="STATE_DIR/plan.json")
    run.add_argument(
        "--node", action="append", default=None, help="a node to host (repeat; default: all)"
    )
    run.add_argument(
        "--perf-interval",
        type=float,
        default=NodeSettings().perf_interval_s,
        help="seconds between sdqkdn_link_perf_update notifications",
    )
    run.add_argument(
        "--no-fsync",
        dest="durable",
        action="store_false",
        help="persist running without fsync: survives an agent restart, not a power loss",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one INFO line per connection
    try:
        plan = LabPlan.load(args.plan)
        for name in args.node or []:
            plan.node(name)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot start agents: {error}", flush=True)
        return 2
    if not args.perf_interval > 0:
        print("cannot start agents: --perf-interval must be > 0", flush=True)
        return 2
    settings = NodeSettings(perf_interval_s=args.perf_interval)
    try:
        return asyncio.run(_serve(plan, args.node, settings, args.durable))
    except (OSError, ValueError, DatastoreError) as error:
        print(f"cannot start agents: {error}", flush=True)
        return 1


async def _serve(
    plan: LabPlan, nodes: Sequence[str] | None, settings: NodeSettings, durable: bool
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tracer = Tracer.from_env("agents")
    async with running_agents(
        plan, nodes, settings=settings, durable=durable, tracer=tracer
    ) as handles:
        for handle in handles.values():
            print(
                f"ready {handle.name} netconf={HOST}:{handle.netconf_port}"
                f" grpc={handle.grpc_address}",
                flush=True,
            )
        print(f"ready: {len(handles)} agents", flush=True)
        await stop.wait()
        print("stopping", flush=True)
    up = sum(1 for h in handles.values() if h.node.status is NodeStatus.OPERATING)
    log.info("stopped %d agents (%d were operating)", len(handles), up)
    tracer.close()
    return 0
