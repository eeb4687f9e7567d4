"""Latency of one ETSI 020 hand-off between border KMs, against one intra-domain relay hop.

    .venv/bin/python bench/etsi020.py [--requests 200] [--json out.json]

Measured in one run, on 127.0.0.1:
- baseline: one intra-domain relay hop — `enc_keys` of one fresh 256-bit key over 1 hop
  (2 KMs, buffer 0, link keys in the pools: bench/relay.py's chain), returning once the far KM
  stored it (gRPC, mutual TLS with the lab CA, AES-GCM with link key);
- hand-off: `Interdomain.hand_off` of one 256-bit key from a_b (domain A) to b_a (domain B),
  returning once b_a's ack `relayed` came back: POST ext_keys (HTTPS, mutual TLS, a CA per
  domain), b_a journals the key (SQLite), answers, stores it for its SAE, and POSTs the ack to
  a_b's callback — two HTTPS requests and two durable writes per key.
The ratio hand-off / hop is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

# `python bench/etsi020.py` puts bench/ first on sys.path, where bench/controller.py would
# shadow the controller package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from bench.relay import relay_chain, summary, timed  # noqa: E402
from km.interdomain.component import Interdomain  # noqa: E402
from km.key_store import KeyStore, StoredKey  # noqa: E402
from tests.harness.interdomain import DomainPki, two_borders  # noqa: E402

HOP = "baseline: 1 intra-domain relay hop"
HAND_OFF = "1 ETSI 020 hand-off (acked)"


async def hand_offs(root: Path, requests: int) -> list[float]:
    pki = DomainPki(root / "pki")
    a_config, b_config = two_borders(root, pki)
    stores = [KeyStore(root / "a_b.sqlite"), KeyStore(root / "b_a.sqlite")]
    sender = Interdomain(a_config, stores[0])
    receiver = Interdomain(b_config, stores[1])
    await receiver.start()
    await sender.start()
    try:

        async def one() -> None:
            key = StoredKey(str(uuid.uuid4()), os.urandom(32), 256, "app-a", ("app-b",), None)
            await sender.hand_off([key], time.monotonic() + 5.0)

        return await timed(requests, one)
    finally:
        await sender.stop()
        await receiver.stop()
        for store in stores:
            store.close()


async def run(requests: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="qkdsdn-bench-020-") as tmp:
        root = Path(tmp)
        link_keys = 2 * (requests + 10) * 2 + 64
        async with relay_chain(root / "hop", 1, 0, link_keys) as source:
            supplier = source.supplier
            results[HOP] = summary(
                await timed(requests, lambda: supplier.enc_keys("app1", ["app2"], "qnode2", 1, 256))
            )
        results[HAND_OFF] = summary(await hand_offs(root / "020", requests))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000:
        parser.error("--requests must be between 1 and 10000")
    results = asyncio.run(run(args.requests))
    print(f"{'case':38} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}")
    for case, figures in results.items():
        print(
            f"{case:38} {figures['p50_ms']:8.3f} {figures['p90_ms']:8.3f} {figures['mean_ms']:8.3f}"
        )
    ratio = results[HAND_OFF]["p50_ms"] / results[HOP]["p50_ms"]
    print(f"hand-off p50 / relay hop p50 = {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({**results, "ratio_p50": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
