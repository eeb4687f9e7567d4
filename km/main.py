"""`qkdsdn km run`: the key manager process of one node (composition root).

Opens the key store (STATE_DIR/km/<node>/keys.sqlite), serves ETSI 014 (HTTPS, mutual TLS)
and ETSI 004 (gRPC, mutual TLS) to the node's applications, and starts the KM-to-KM relay
(`km.relay.component.RelayComponent`). Prints one line starting with
`ready` on stdout when every server listens. SIGTERM or SIGINT: clean shutdown. SIGHUP:
reload the access policy file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.tracing import Tracer
from km.access import AccessControl, AccessPolicy
from km.etsi004.app_service import KeyStreamService, StreamLimits, start_app_server
from km.etsi014.app import create_app
from km.etsi014.server import MutualTlsServer, TlsFiles
from km.etsi014.service import Etsi014Limits, Etsi014Service
from km.key_store import KeyStore
from km.relay.component import RelayComponent
from km.supply import KeySupply
from lab.plan import LabPlan

log = logging.getLogger("km")

PURGE_INTERVAL_S = 10.0
CHECKPOINT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class KmOptions:
    plan_path: Path
    node: str
    policy: Path | None = None


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the key manager of one node")
    run.add_argument("--plan", required=True, type=Path, help="STATE_DIR/plan.json")
    run.add_argument("--node", required=True, help="node name in the plan")
    run.add_argument("--policy", type=Path, help="access policy YAML (default: all apps allowed)")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    run.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = KmOptions(plan_path=args.plan, node=args.node, policy=args.policy)
    try:
        return asyncio.run(run_key_manager(options))
    except (KeyError, OSError, ValueError) as exc:  # bad plan, node, policy, busy port
        print(f"qkdsdn km run: {exc}", file=sys.stderr)
        return 2


async def run_key_manager(options: KmOptions, stop: asyncio.Event | None = None) -> int:
    plan = LabPlan.load(options.plan_path)
    node = plan.node(options.node)
    state_dir = Path(plan.state_dir)
    cert, key = plan.node_certs.get(
        node.name,
        (
            str(state_dir / "pki" / f"km-{node.name}.pem"),
            str(state_dir / "pki" / f"km-{node.name}.key"),
        ),
    )
    tls = TlsFiles(Path(cert), Path(key), Path(plan.credentials.ca_cert))
    sae_nodes = {app.sae_id: app.node for app in plan.apps}
    access = (
        AccessControl.from_file(options.policy)
        if options.policy is not None
        else AccessControl(AccessPolicy.allow_all(sae_nodes))
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, access.reload)

    store = KeyStore(state_dir / "km" / node.name / "keys.sqlite")
    tracer = Tracer.from_env(f"km:{node.name}")  # one trace file per process, shared
    relay = RelayComponent(plan, node.name, store, tracer=tracer)
    supply = KeySupply(node.name, sae_nodes, store, relay.supplier)
    settings = plan.settings
    limits = Etsi014Limits(
        key_size_bits=settings.key_size_bits,
        max_key_per_request=settings.max_key_per_request,
        min_key_size_bits=settings.min_key_size_bits,
        max_key_size_bits=settings.max_key_size_bits,
        relay_buffer=settings.e2e_buffer,
    )
    kme_ids = {n.name: n.qkdn_id for n in plan.nodes}
    service = Etsi014Service(supply, access, kme_ids, limits, tracer=tracer)
    streams = KeyStreamService(
        supply,
        access,
        StreamLimits(
            min_chunk_bytes=settings.min_key_size_bits // 8,
            max_chunk_bytes=settings.max_key_size_bits // 8,
        ),
    )
    grpc_server = None
    http: MutualTlsServer | None = None
    purge = asyncio.create_task(_purge_forever(store))
    checkpoints = asyncio.create_task(_checkpoint_forever(store))
    try:
        await relay.start()
        http = MutualTlsServer(create_app(service), tls, node.km_etsi014_port)
        await http.start()
        grpc_server, grpc_port = await start_app_server(
            streams, tls.cert, tls.key, tls.ca, node.km_etsi004_port
        )
        # Everything made at start-up (FastAPI, pydantic and gRPC objects) lives as long as the
        # process: out of the collector's sight, full collections no longer stall requests
        # (p99 of enc_keys under load fell from ~40 ms to ~20 ms, bench/etsi014.py).
        gc.collect()
        gc.freeze()
        print(
            f"ready km {node.name} etsi014={http.url} etsi004=127.0.0.1:{grpc_port} "
            f"relay={node.km_relay_address}",
            flush=True,
        )
        log.info("key manager %s ready", node.name)
        await stop.wait()
        log.info("key manager %s stopping", node.name)
    finally:
        for task in (purge, checkpoints):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        if http is not None:
            await http.stop()
        await relay.stop()
        store.close()
        tracer.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("key manager %s stopped", node.name)
    return 0


async def _checkpoint_forever(store: KeyStore) -> None:
    """WAL checkpoints in a worker thread: their fsync never stalls the event loop."""
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        try:
            await asyncio.to_thread(store.checkpoint)
        except Exception as exc:  # the automatic checkpoint still bounds the WAL
            log.error("key store checkpoint failed: %s", exc)


async def _purge_forever(store: KeyStore) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            purged = store.purge_expired(time.time())
        except Exception as exc:  # keep purging: one failure must not stop the KM
            log.error("purge of expired keys failed: %s", exc)
            continue
        if purged:
            log.info("purged %d expired key(s)", purged)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m km.main")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args()
    raise SystemExit(parsed.func(parsed))
