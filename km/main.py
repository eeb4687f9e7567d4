"""`qkdsdn km run --config A [--config B ...]`: key managers, one or many in one process.

Per key manager (one km.yaml each, km/config.py): opens the key store
(`data_dir/keys.sqlite`), serves ETSI 014 (HTTPS, mutual TLS) and ETSI 004 (gRPC, mutual TLS)
to the node's applications, and starts the KM-to-KM relay (`km.relay.component`). Several
KMs share one event loop (a large twin on few cores). Prints one line starting with `ready`
per KM on stdout when its servers listen. SIGTERM or SIGINT: clean shutdown. SIGHUP: reload
the access policy files.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from common.audit import AuditLog
from common.config import Address, load_each
from common.metrics import CollectorRegistry, MetricsServer
from common.tracing import Tracer
from km.access import AccessControl, AccessPolicy
from km.config import ConfigError, KmConfig, load
from km.consumption import ConsumptionLedger, report_forever
from km.etsi004.app_service import KeyStreamService, StreamLimits, start_app_server
from km.etsi014.app import create_app
from km.etsi014.server import MutualTlsServer
from km.etsi014.service import Etsi014Limits, Etsi014Service
from km.interdomain.component import Interdomain
from km.key_store import KeyStore, StoredKey
from km.metrics import KmMetrics
from km.pqc.component import KeyModes
from km.relay.component import RelayComponent
from km.skip.app import create_app as create_skip_app
from km.skip.core import SkipLimits, SkipService
from km.supply import KeySupply

log = logging.getLogger("km")

PURGE_INTERVAL_S = 10.0
AUDIT_LOG_NAME = "audit.jsonl"  # in the KM's data_dir
CHECKPOINT_INTERVAL_S = 1.0


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run key managers from their km.yaml files")
    run.add_argument(
        "--config",
        type=Path,
        action="append",
        required=True,
        help="a km.yaml (repeat to host several key managers in this process)",
    )
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    run.set_defaults(func=_run_command)


def load_all(paths: Sequence[Path]) -> list[KmConfig]:
    """Every file's configuration; one ConfigError listing the problems of all of them."""
    return load_each(paths, load, lambda config: config.node, "key manager")


def _run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        configs = load_all(args.config)
    except ConfigError as exc:
        print(f"qkdsdn km run: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_key_managers(configs))
    except (KeyError, OSError, ValueError) as exc:  # bad policy file, busy port
        print(f"qkdsdn km run: {exc}", file=sys.stderr)
        return 2


class KeyManager:
    """One key manager: its key store, relay, ETSI 014 and ETSI 004 servers."""

    def __init__(self, config: KmConfig, metrics: KmMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or KmMetrics.off()
        self.access = (
            AccessControl.from_file(config.policy)
            if config.policy is not None
            else AccessControl(AccessPolicy.allow_all(dict(config.applications)))
        )
        # The KM's configuration changes (policy reloads) in its own append-only log.
        self.audit = AuditLog(f"km:{config.node}", config.data_dir / AUDIT_LOG_NAME)
        self.access.on_reload = self._audit_reload
        self.store: KeyStore | None = None
        self.relay: RelayComponent | None = None
        self.modes: KeyModes | None = None
        self.http: MutualTlsServer | None = None
        self.skip: MutualTlsServer | None = None
        self.interdomain: Interdomain | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.grpc_port = 0
        self.tracer = Tracer.from_env(f"km:{config.node}")  # the process's trace file, shared
        self.consumption: ConsumptionLedger | None = None  # bits delivered per SAE pair
        self._tasks: list[asyncio.Task[None]] = []

    def _audit_reload(self, trigger: str, replaced: bool, detail: str) -> None:
        # A reload is asked by whoever may signal the process or write the file: the host.
        target = str(self.config.policy)
        outcome = "ok" if replaced else "failed"
        self.audit.record(f"local:{trigger}", "host", "policy.reload", target, outcome, detail)

    async def start(self) -> None:
        """Opens the store and starts every server; on failure what started is stopped."""
        config, settings = self.config, self.config.settings
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = self.store = KeyStore(config.key_store_file)
        self._tasks = [asyncio.create_task(_checkpoint_forever(store))]
        try:
            relay = self.relay = RelayComponent(config, store, tracer=self.tracer)
            apps = dict(config.applications)
            modes = self.modes = KeyModes(config, store, relay, self.access)
            supply = KeySupply(config.node, apps, store, modes.supplier)
            limits = Etsi014Limits(
                key_size_bits=settings.key_size_bits,
                max_key_per_request=settings.max_key_per_request,
                min_key_size_bits=settings.min_key_size_bits,
                max_key_size_bits=settings.max_key_size_bits,
                relay_buffer=settings.e2e_buffer,
            )
            recorder = self.metrics.for_node(config.node)
            relay.forwarder.metrics = recorder
            self.metrics.watch_pools(config.node, lambda: relay.pools.pools)
            self._tasks.append(asyncio.create_task(_purge_forever(store, recorder.expired)))
            self.consumption = ledger = ConsumptionLedger()
            node_link = relay.node_link
            self._tasks.append(
                asyncio.create_task(
                    report_forever(
                        ledger, node_link.report_consumption, lambda: node_link.generation
                    )
                )
            )
            service = Etsi014Service(
                supply,
                self.access,
                config.node_ids(),
                limits,
                tracer=self.tracer,
                origins=modes.origins,
                metrics=recorder,
                consumption=ledger,
            )
            streams = KeyStreamService(
                supply,
                self.access,
                StreamLimits(
                    min_chunk_bytes=settings.min_key_size_bits // 8,
                    max_chunk_bytes=settings.max_key_size_bits // 8,
                ),
                consumption=ledger,
            )
            await relay.start()
            if config.interdomain is not None:
                self.interdomain = self._border(relay, supply)
                await self.interdomain.start()
            self.http = MutualTlsServer(create_app(service), config.tls, config.listen.etsi014)
            await self.http.start()
            if config.listen.skip is not None:
                skip = SkipService(
                    supply,
                    self.access,
                    SkipLimits(
                        key_size_bits=settings.key_size_bits,
                        min_key_size_bits=settings.min_key_size_bits,
                        max_key_size_bits=settings.max_key_size_bits,
                    ),
                    consumption=ledger,
                )
                self.skip = MutualTlsServer(
                    create_skip_app(skip), config.tls, config.listen.skip, "SKIP"
                )
                await self.skip.start()
            tls = config.tls
            self.grpc_server, self.grpc_port = await start_app_server(
                streams, tls.cert, tls.key, tls.ca, config.listen.etsi004
            )
        except BaseException:
            await self.stop()
            raise

    def _border(self, relay: RelayComponent, supply: KeySupply) -> Interdomain:
        """The ETSI 020 face of a border KM, hooked into the relay's segment end and the
        key supply (keys for SAEs of other domains are handed off, not stored here)."""

        async def relay_keys(keys: Sequence[StoredKey], node: str) -> None:
            first = keys[0]
            await relay.supplier.enc_keys(
                first.master, first.slaves, node, len(keys), first.size_bits, keys=keys
            )

        border = Interdomain(
            self.config,
            relay.forwarder.store,
            relay=relay_keys,
            void_relay=relay.supplier.void,
            audit=self.audit,
            tracer=self.tracer,
        )
        relay.forwarder.hand_offs = border
        supply.foreign = border
        return border

    @property
    def ready_line(self) -> str:
        config = self.config
        etsi014 = self.http.url if self.http is not None else "-"
        etsi004 = Address(config.listen.etsi004.host, self.grpc_port)
        line = f"ready km {config.node} etsi014={etsi014} etsi004={etsi004} relay={config.listen.relay}"
        if self.interdomain is not None:
            line = f"{line} etsi020={self.interdomain.url}"
        return line if self.skip is None else f"{line} skip={self.skip.url}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.metrics.forget(self.config.node)
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1.0)
            self.grpc_server = None
        # ETSI 014 and SKIP together: each may wait its grace period for idle clients
        https = [server for server in (self.http, self.skip) if server is not None]
        await asyncio.gather(*(server.stop() for server in https))
        self.http = self.skip = None
        if self.interdomain is not None:
            await self.interdomain.stop()
            self.interdomain = None
        if self.modes is not None:
            await self.modes.close()
            self.modes = None
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self.tracer.close()


async def run_key_managers(configs: Sequence[KmConfig], stop: asyncio.Event | None = None) -> int:
    """Runs the key managers of `configs` in this event loop until `stop` (or a signal)."""
    addresses = list(dict.fromkeys(c.metrics for c in configs if c.metrics is not None))
    registry = CollectorRegistry(auto_describe=True) if addresses else None
    metrics = KmMetrics(registry)
    # A bad policy file fails here.
    managers = [KeyManager(config, metrics) for config in configs]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        for manager in managers:
            manager.access.reload()

    loop.add_signal_handler(signal.SIGHUP, reload)
    started: list[KeyManager] = []
    servers: list[MetricsServer] = []
    try:
        for manager in managers:
            await manager.start()
            started.append(manager)
        for address in addresses:
            assert registry is not None
            servers.append(MetricsServer.start(registry, address))
            print(f"metrics {servers[-1].url}", flush=True)
        # Everything made at start-up (FastAPI, pydantic and gRPC objects) lives as long as the
        # process: out of the collector's sight, full collections no longer stall requests
        # (p99 of enc_keys under load fell from ~40 ms to ~20 ms, bench/etsi014.py).
        gc.collect()
        gc.freeze()
        for manager in started:
            print(manager.ready_line, flush=True)
            log.info("key manager %s ready", manager.config.node)
        await stop.wait()
        log.info("key managers stopping")
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)  # off the loop: it waits for its thread
        await asyncio.gather(*(m.stop() for m in started), return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    for manager in started:
        log.info("key manager %s stopped", manager.config.node)
    return 0


async def run_key_manager(config: KmConfig, stop: asyncio.Event | None = None) -> int:
    """One key manager (see run_key_managers)."""
    return await run_key_managers([config], stop)


async def _checkpoint_forever(store: KeyStore) -> None:
    """WAL checkpoints in a worker thread: their fsync never stalls the event loop."""
    checkpointed = -1
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        if store.changes == checkpointed:
            continue  # nothing written since: an idle KM does not wake a thread for nothing
        checkpointed = store.changes
        try:
            await asyncio.to_thread(store.checkpoint)
        except Exception as exc:  # the automatic checkpoint still bounds the WAL
            log.error("key store checkpoint failed: %s", exc)


async def _purge_forever(store: KeyStore, lost: Callable[[int], None]) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            purged = store.purge_expired(time.time())
        except Exception as exc:  # keep purging: one failure must not stop the KM
            log.error("purge of expired keys failed: %s", exc)
            continue
        lost(purged)
        if purged:
            log.info("purged %d expired key(s)", purged)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m km.main")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args()
    raise SystemExit(parsed.func(parsed))
