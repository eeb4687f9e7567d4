"""End-to-end key latency of the trusted-node relay, against one direct gRPC round trip.

    .venv/bin/python bench/relay.py [--requests 200] [--json out.json]

Measured in one run, all on 127.0.0.1 with the lab PKI (mutual TLS everywhere):
- baseline: one unary gRPC round trip (mutual TLS, 1 kB payload) to an echo server;
- warm: `enc_keys` of one 256-bit key with the buffer of keys relayed ahead full (the
  background refill runs between requests, outside the timed region);
- cold: `enc_keys` with buffer 0, so every request relays a fresh key hop by hop, over
  2 hops (3 KMs) and 10 hops (11 KMs), with link keys available.

Every KM is a real relay gRPC server; the key store is the real SQLite store. The agents are
left out: link keys are put into the pools with the modules' own key stream
(agents.emulator.keystream), which is what the pools hold after their background fetch, and the
associations come from the controller's compiled edits, converted to RFC 7951 JSON by
yang.schema as an agent pushes them. The KMs share one event loop (separate processes in
a lab), which is the slower case: no hop overlaps with another.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

# `python bench/relay.py` puts bench/ first on sys.path, where bench/controller.py would
# shadow the controller package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import grpc  # noqa: E402

from agents.emulator.keystream import key_material  # noqa: E402
from controller.intents.compile import RelaySettings, compile_install  # noqa: E402
from controller.model import KeyRequest  # noqa: E402
from controller.model import Path as RoutePath  # noqa: E402
from km.associations import AppRequest, Associations, parse_node_config  # noqa: E402
from km.key_store import KeyStore  # noqa: E402
from km.link_pools import LinkKeyPools  # noqa: E402
from km.relay.client import RelayClient, tls_material  # noqa: E402
from km.relay.forwarder import Forwarder  # noqa: E402
from km.relay.relayed_keys import RelayedKeys  # noqa: E402
from km.relay.servicer import relay_server  # noqa: E402
from lab.plan import LabPlan  # noqa: E402
from tests.harness.configs import km_config_of  # noqa: E402
from tests.harness.relay import make_plan  # noqa: E402
from yang.schema import Schema  # noqa: E402

TARGETS_MS = {"warm": 2.0, "cold 2 hops": 5.0, "cold 10 hops": 15.0}
CHUNK_BYTES = 32


def chain_plan(state: Path, hops: int) -> LabPlan:
    names = [f"qnode{i}" for i in range(1, hops + 2)]
    return make_plan(state, names, list(itertools.pairwise(names)))


@dataclass
class Km:
    supplier: RelayedKeys
    pools: LinkKeyPools
    server: grpc.aio.Server
    client: RelayClient
    store: KeyStore


async def _no_registration(request: AppRequest) -> None:
    raise RuntimeError("the bench installs its association up front")


@asynccontextmanager
async def relay_chain(state: Path, hops: int, buffer: int, link_keys: int) -> AsyncIterator[Km]:
    """KMs along a chain with an installed association; yields the source KM."""
    plan = chain_plan(state, hops)
    names = [n.name for n in plan.nodes]
    route = RoutePath(
        tuple(n.qkdn_id for n in plan.nodes), tuple(link.qkdl_id for link in plan.links)
    )
    request = KeyRequest(route.nodes[0], route.nodes[-1], "app1", ("app2",))
    edits = compile_install(
        str(uuid.uuid4()), request, route, 256, RelaySettings("aes-gcm", buffer)
    )
    schema = Schema.default()
    kms: list[Km] = []
    async with AsyncExitStack() as stack:
        for name in names:
            node = plan.node(name)
            config = km_config_of(plan, name)
            store = KeyStore(state / f"{name}.sqlite")
            stack.callback(store.close)
            pools = LinkKeyPools(config)
            for pool in pools.pools:
                seed = Path(
                    next(link.seed_file for link in plan.links if link.qkdl_id == pool.link.qkdl_id)
                ).read_bytes()
                for index in range(link_keys):
                    pool.put(index, key_material(seed, pool.link.qkdl_id, index, CHUNK_BYTES))
            associations = Associations(node.qkdn_id, _no_registration)
            data = edits[node.qkdn_id].data
            assert data is not None
            associations.update(
                parse_node_config(json.dumps(schema.xml_to_json(data, config_only=True)))
            )
            client = RelayClient(config.configured_relays(), config.tls)
            stack.push_async_callback(client.close)
            forwarder = Forwarder(config, store, pools, associations, client)
            server, _ = relay_server(config.listen.relay, config.tls, forwarder)
            await server.start()
            stack.push_async_callback(server.stop, None)
            supplier = RelayedKeys(config, store, associations, forwarder)
            stack.push_async_callback(supplier.close)
            kms.append(Km(supplier, pools, server, client, store))

        async def close_clients() -> None:  # before any server stops: no GOAWAY noise
            for km in kms:
                await km.client.close()

        stack.push_async_callback(close_clients)
        yield kms[0]


@asynccontextmanager
async def echo_channel(state: Path) -> AsyncIterator[Callable[[bytes], Awaitable[bytes]]]:
    """A one-method echo server and a channel to it, both with the lab's mutual TLS."""
    plan = chain_plan(state, 1)
    ca, cert, key = tls_material(km_config_of(plan, "qnode1").tls)

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_secure_port(
        plan.node("qnode1").km_relay_address,
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True),
    )
    await server.start()
    ca2, cert2, key2 = tls_material(km_config_of(plan, "qnode2").tls)
    channel = grpc.aio.secure_channel(
        plan.node("qnode1").km_relay_address,
        grpc.ssl_channel_credentials(
            root_certificates=ca2, private_key=key2, certificate_chain=cert2
        ),
    )
    call = channel.unary_unary("/bench.Echo/Echo", None, None)
    try:

        async def once(payload: bytes) -> bytes:
            reply: bytes = await call(payload, timeout=5.0)
            return reply

        yield once
    finally:
        await channel.close(None)
        await server.stop(None)


async def timed(
    requests: int,
    action: Callable[[], Awaitable[object]],
    between: Callable[[], Awaitable[object]] | None = None,
) -> list[float]:
    """Milliseconds per call; `between` runs untimed after each call. Two warm-up calls."""
    samples = []
    for i in range(requests + 2):
        start = time.perf_counter()
        await action()
        elapsed = (time.perf_counter() - start) * 1000.0
        if i >= 2:
            samples.append(elapsed)
        if between is not None:
            await between()
    return samples


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered),
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        "mean_ms": statistics.fmean(ordered),
        "n": float(len(ordered)),
    }


def _one_key(supplier: RelayedKeys, dest: str) -> Callable[[], Awaitable[object]]:
    return lambda: supplier.enc_keys("app1", ["app2"], dest, 1, 256)


async def run(requests: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="qkdsdn-bench-") as tmp:
        root = Path(tmp)
        async with echo_channel(root / "echo") as echo:
            payload = secrets.token_bytes(1024)
            results["baseline: 1 gRPC round trip (mTLS)"] = summary(
                await timed(requests, lambda: echo(payload))
            )
        link_keys = 2 * (requests + 10) * 2 + 64
        async with relay_chain(root / "warm", 2, 3, link_keys) as source:
            supplier = source.supplier
            await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            await supplier.wait_refills()
            results["warm"] = summary(
                await timed(
                    requests,
                    lambda: supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256),
                    supplier.wait_refills,
                )
            )
        for hops in (2, 10):
            async with relay_chain(root / f"cold{hops}", hops, 0, link_keys) as source:
                results[f"cold {hops} hops"] = summary(
                    await timed(requests, _one_key(source.supplier, f"qnode{hops + 1}"))
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000:
        parser.error("--requests must be between 1 and 10000")
    results = asyncio.run(run(args.requests))
    baseline = results["baseline: 1 gRPC round trip (mTLS)"]["p50_ms"]
    print(f"{'case':38} {'p50 ms':>8} {'p90 ms':>8} {'x RTT':>7} {'target':>8}")
    for case, figures in results.items():
        target = TARGETS_MS.get(case)
        verdict = (
            ""
            if target is None
            else (f"<= {target:g}" + (" ok" if figures["p50_ms"] <= target else " MISS"))
        )
        print(
            f"{case:38} {figures['p50_ms']:8.3f} {figures['p90_ms']:8.3f}"
            f" {figures['p50_ms'] / baseline:7.1f} {verdict:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
