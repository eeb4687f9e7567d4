"""`qkdsdn agent run --config A [--config B ...]`: agents, many nodes in one asyncio process.

Per node (one agent.yaml each, agents/config.py): a NETCONF server (asyncssh) on
`listen.netconf` over the node's datastore, and one grpc.aio server on `listen.grpc` with
KeyDelivery (ETSI 004 module side), NodeLink and AgentControl. Running is persisted in
`data_dir` (running.xml, and each module's
<qkdl_id>.position: how far it handed out keys). Tests and other parts use `running_agents(configs)` to host agents
in their own event loop.
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
from typing import Any

import grpc

from agents import control_service, etsi004_service, node_link_service
from agents.access.cert_names import CertNames
from agents.access.nacm import Nacm
from agents.access.nacm import standard as standard_rules
from agents.access.nacm import to_json as nacm_json
from agents.access.users import Accounts, User, hash_password
from agents.config import AgentConfig, ConfigError, load
from agents.datastore import Datastore, DatastoreError
from agents.datastore.tree import BASE_NS
from agents.grpc_auth import agent_grpc_server
from agents.initial_config import QKD_NODE
from agents.metrics import AgentMetrics
from agents.netconf.server import NetconfCredentials, NetconfServer
from agents.node import NodeSettings, NodeStatus, QkdNode, Site
from agents.restconf.protocol import Restconf
from agents.restconf.server import BasicAuth, RestconfApp, RestconfServer
from common.audit import LOG_NAME, AuditLog
from common.config import Address, load_each
from common.metrics import CollectorRegistry, MetricsServer
from common.roles import TlsMaterial, server_credentials
from common.tracing import Tracer
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
    grpc_host: str  # as configured (a wildcard too)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    restconf: RestconfServer | None = None  # when `listen.restconf` is configured
    stopped: bool = False

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def grpc_address(self) -> str:
        """Where a client on this host reaches the gRPC server (a wildcard becomes loopback)."""
        return str(Address(self.grpc_host, self.grpc_port).reachable)

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
        if self.restconf is not None:
            await self.restconf.stop()
        await self.grpc_server.stop(GRPC_STOP_GRACE_S)

    async def stop_node(self) -> None:
        """A crash of the node: modules down (peers notice), then the servers go."""
        self.node.stop()
        await self.stop_servers()


def credentials(config: AgentConfig) -> NetconfCredentials:
    files = config.netconf
    return NetconfCredentials(
        username=files.username,
        password=files.password_file.read_text(encoding="utf-8").strip(),
        authorized_keys=tuple(files.authorized_keys_file.read_text(encoding="utf-8").splitlines()),
        host_key_path=files.host_key,
    )


def accounts(config: AgentConfig) -> Accounts:
    """The NETCONF/RESTCONF accounts: `netconf.username` (its password file hashed here,
    its keys, `netconf.group`) and each of `netconf.users`."""
    files = config.netconf
    users = [
        User(
            files.username,
            files.group,
            # The password is on disk in clear already (the controller reads the same file):
            # a light scrypt keeps it out of memory without costing a 200-agent process
            # seconds of start-up.
            hash_password(files.password_file.read_text(encoding="utf-8").strip(), n=2**10),
            tuple(files.authorized_keys_file.read_text(encoding="utf-8").splitlines()),
        )
    ]
    for user in files.users:
        keys = user.authorized_keys_file
        users.append(
            User(
                user.name,
                user.group,
                user.password_hash,
                tuple(keys.read_text(encoding="utf-8").splitlines()) if keys else (),
            )
        )
    return Accounts(users)


def node_tree(running: dict[str, Any]) -> dict[str, Any]:
    """Of a running configuration, what the node (and its key manager's feed) reads: the
    015 tree; the access rules beside it are the front ends' business."""
    if QKD_NODE not in running:
        return {}
    # The same object when nothing is left out: the node keeps what it parsed of it.
    return running if len(running) == 1 else {QKD_NODE: running[QKD_NODE]}


class NodeTreeOnly:
    """The node as the datastore's backend, handed only its own tree (`node_tree`)."""

    def __init__(self, node: QkdNode) -> None:
        self._node = node

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return self._node.veto(node_tree(new_running))

    def apply(self, new_running: dict[str, Any]) -> None:
        self._node.apply(node_tree(new_running))

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return self._node.operational(node_tree(running))


def _restconf(
    config: AgentConfig,
    store: Datastore,
    netconf: NetconfServer,
    users: Accounts,
    audit: AuditLog,
    configured_ports: bool,
) -> RestconfServer | None:
    """The RESTCONF face on `listen.restconf` (HTTPS with the agent's TLS), if configured."""
    address = config.listen.restconf
    if address is None or config.tls is None:
        return None
    restconf = Restconf(store, netconf.access, audit, netconf.lock_holder)
    app = RestconfApp(restconf, BasicAuth(users), CertNames(config.netconf.cert_to_name))
    bound = address if configured_ports else Address(address.host, 0)
    return RestconfServer(app, config.tls, bound)


def _datastore(
    schema: Schema,
    node: QkdNode,
    persist: Path | None,
    durable: bool = True,
    rules: Nacm | None = None,
) -> Datastore:
    """The node's datastore; a persisted running the node cannot use is set aside. A fresh
    running holds the node's initial tree and `rules` (NACM's /nacm)."""
    first = node.initial_running()
    if rules is not None:
        first = {**first, **nacm_json(rules)}
    # Several top-level nodes: in the <data> wrapper the datastore reads.
    initial = f'<data xmlns="{BASE_NS}">{schema.json_to_xml(first)}</data>'
    reads = frozenset({QKD_NODE})  # the node is handed its own tree alone
    if persist is None:
        return Datastore(schema, NodeTreeOnly(node), None, initial, backend_reads=reads)
    try:
        store = Datastore(
            schema, NodeTreeOnly(node), persist, initial, durable=durable, backend_reads=reads
        )
        reason = node.veto(node_tree(store.running_json()))
    except DatastoreError as error:
        reason = str(error)
    if reason is None:
        return store
    stale = persist.with_suffix(".stale.xml")
    log.warning("%s: persisted running refused (%s); moved to %s", node.name, reason, stale)
    persist.replace(stale)
    return Datastore(
        schema, NodeTreeOnly(node), persist, initial, durable=durable, backend_reads=reads
    )


async def start_agent(
    config: AgentConfig,
    site: Site,
    schema: Schema,
    *,
    settings: NodeSettings | None = None,
    persist: bool = True,
    durable: bool | None = None,
    configured_ports: bool = True,
    tracer: Tracer | None = None,
    metrics: AgentMetrics | None = None,
) -> AgentHandle:
    """Composes and starts the agent of `config` (its ports, or free ones on its hosts).

    `persist` keeps running in `data_dir/running.xml`; `durable` (default: the config's)
    also fsyncs it at every commit, so a commit survives a power loss, not only a restart."""
    name = config.node
    if config.tls is None:
        raise ValueError(f"{name}: the agent's gRPC needs tls (cert, key, ca): it serves link keys")
    tls = TlsMaterial.of(config.tls)
    settings = settings or NodeSettings(perf_interval_s=config.perf_interval_s)
    node = QkdNode(
        config,
        site,
        settings=settings,
        tracer=tracer,
        # Key positions in the data directory, always fsynced (one write per block of keys):
        # unlike running, a lost position would let a key stream repeat after a power loss.
        positions_dir=config.data_dir if persist else None,
    )
    path = config.running_file if persist else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    users = accounts(config)
    rules = standard_rules(users.group_members())
    store = _datastore(
        schema, node, path, config.durable if durable is None else durable, rules=rules
    )
    node.start(node_tree(store.running_json()))
    listen = config.listen
    audit = AuditLog(f"agent:{name}", config.data_dir / LOG_NAME if persist else None)
    netconf = NetconfServer(
        store,
        credentials(config),
        listen.netconf.host,
        listen.netconf.port if configured_ports else 0,
        accounts=users,
        audit=audit,
    )
    if metrics is None:
        node.set_publisher(netconf.publish)
    else:
        node.set_publisher(metrics.counted(name, netconf.publish))
        metrics.watch(node)
    server = agent_grpc_server(name)
    handle_box: list[AgentHandle] = []

    async def on_stop() -> None:
        await handle_box[0].stop_servers()

    etsi004_service.add_to_server(etsi004_service.KeyDeliveryService(node), server)
    node_link_service.add_to_server(node_link_service.NodeLinkService(node), server)
    control_service.add_to_server(control_service.AgentControlService(node, on_stop), server)
    grpc_address = Address(listen.grpc.host, listen.grpc.port if configured_ports else 0)
    # Mutual TLS; who may call what: agents/grpc_auth.py.
    port = server.add_secure_port(str(grpc_address), server_credentials(tls))
    if port == 0:
        raise OSError(f"{name}: cannot listen on {listen.grpc} (gRPC)")
    await netconf.start()
    restconf = _restconf(config, store, netconf, users, audit, configured_ports)
    try:
        if restconf is not None:
            await restconf.start()
        await server.start()
    except BaseException:
        await netconf.stop()
        if restconf is not None:
            await restconf.stop()
        raise
    handle = AgentHandle(node, store, netconf, server, netconf.port, port, listen.grpc.host)
    handle.restconf = restconf
    handle_box.append(handle)
    handle.tasks.append(asyncio.get_running_loop().create_task(node.run_perf_updates()))
    return handle


@contextlib.asynccontextmanager
async def running_agents(
    configs: Sequence[AgentConfig],
    *,
    settings: NodeSettings | None = None,
    persist: bool = True,
    durable: bool | None = None,
    configured_ports: bool = True,
    site: Site | None = None,
    tracer: Tracer | None = None,
    metrics: AgentMetrics | None = None,
) -> AsyncIterator[dict[str, AgentHandle]]:
    """The agents of `configs` for the duration of the block, by node name."""
    names = [config.node for config in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"a node is configured twice: {names}")
    schema = Schema.default()
    site = site or Site()
    handles: dict[str, AgentHandle] = {}
    try:
        for config in configs:
            handles[config.node] = await start_agent(
                config,
                site,
                schema,
                settings=settings,
                persist=persist,
                durable=durable,
                configured_ports=configured_ports,
                tracer=tracer,
                metrics=metrics,
            )
        yield handles
    finally:
        await asyncio.gather(
            *(handle.stop_servers() for handle in handles.values()), return_exceptions=True
        )


# ---- command line ------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="host the agents of one or more agent.yaml files")
    run.add_argument(
        "--config",
        type=Path,
        action="append",
        required=True,
        help="an agent.yaml (repeat to host several nodes in this process)",
    )
    run.set_defaults(func=cmd_run)


def load_all(paths: Sequence[Path]) -> list[AgentConfig]:
    """Every file's configuration; one ConfigError listing the problems of all of them."""
    return load_each(paths, load, lambda config: config.node, "node")


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one INFO line per connection
    try:
        configs = load_all(args.config)
    except ConfigError as error:
        print(f"cannot start agents:\n{error}", flush=True)
        return 2
    try:
        return asyncio.run(_serve(configs))
    except (OSError, ValueError, DatastoreError) as error:
        print(f"cannot start agents: {error}", flush=True)
        return 1


async def _serve(configs: Sequence[AgentConfig]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tracer = Tracer.from_env("agents")
    addresses = list(dict.fromkeys(c.metrics for c in configs if c.metrics is not None))
    metrics = AgentMetrics(CollectorRegistry(auto_describe=True)) if addresses else None
    servers: list[MetricsServer] = []
    try:
        async with running_agents(configs, tracer=tracer, metrics=metrics) as handles:
            for address in addresses:
                assert metrics is not None
                servers.append(MetricsServer.start(metrics.registry, address))
                print(f"metrics {servers[-1].url}", flush=True)
            await _until_stopped(configs, handles, stop)
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)  # off the loop: it waits for its thread
    up = sum(1 for h in handles.values() if h.node.status is NodeStatus.OPERATING)
    log.info("stopped %d agents (%d were operating)", len(handles), up)
    tracer.close()
    return 0


async def _until_stopped(
    configs: Sequence[AgentConfig], handles: dict[str, AgentHandle], stop: asyncio.Event
) -> None:
    """Prints the ready lines, then waits for a stop signal."""
    for config in configs:
        handle = handles[config.node]
        netconf = Address(config.listen.netconf.host, handle.netconf_port)
        print(
            f"ready {handle.name} netconf={netconf} grpc={Address(handle.grpc_host, handle.grpc_port)}",
            flush=True,
        )
    print(f"ready: {len(handles)} agents", flush=True)
    await stop.wait()
    print("stopping", flush=True)
