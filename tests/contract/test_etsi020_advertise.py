"""A border KM whose ETSI 020 server listens on every address (a container's 0.0.0.0) names
its `interdomain.advertise` host in its ack callback, and the peer acks it there."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest

from common.config import ConfigError
from km import config as km_config
from km.interdomain.component import Interdomain
from km.key_store import KeyStore, StoredKey
from tests.harness.interdomain import DomainPki, two_border_data


def test_a_border_km_on_every_address_is_handed_its_ack_at_the_host_it_advertises(
    tmp_path: Path,
) -> None:
    a, b = two_border_data(tmp_path, DomainPki(tmp_path / "pki"))
    port_a = a["interdomain"]["listen"].rsplit(":", 1)[1]
    a["interdomain"]["listen"] = f"0.0.0.0:{port_a}"
    a["interdomain"]["advertise"] = f"localhost:{port_a}"
    # b_a knows a_b by that name: it acks only a callback on its peer's configured host
    b["interdomain"]["peers"][0]["url"] = f"https://localhost:{port_a}/kmapi/v1"
    a_config = km_config.parse(a, tmp_path / "km-a_b.yaml")
    b_config = km_config.parse(b, tmp_path / "km-b_a.yaml")
    keys = [
        StoredKey(str(uuid.uuid4()), os.urandom(32), 256, "app-a", ("app-b",), None)
        for _ in range(2)
    ]

    async def run() -> None:
        stores, kms = [], []
        try:
            for config in (b_config, a_config):
                config.data_dir.mkdir(parents=True, exist_ok=True)
                stores.append(KeyStore(config.data_dir / "keys.sqlite"))
                kms.append(Interdomain(config, stores[-1]))
                await kms[-1].start()
            a_b = kms[1]
            assert a_b.callback_url == f"https://localhost:{port_a}/kmapi/v1/ext_keys/ack"
            await a_b.hand_off(keys, time.monotonic() + 20.0)  # returns once acked `relayed`
            claimed = stores[0].claim("app-b", "app-a", [k.key_id for k in keys])
            assert [k.material for k in claimed] == [k.material for k in keys]
        finally:
            for km in reversed(kms):
                await km.stop()
            for store in stores:
                store.close()

    asyncio.run(run())


def test_an_advertised_wildcard_address_is_refused_naming_the_field(tmp_path: Path) -> None:
    a, _ = two_border_data(tmp_path, DomainPki(tmp_path / "pki"))
    assert km_config.parse(a, tmp_path / "km.yaml").interdomain.advertise is None  # type: ignore[union-attr]
    a["interdomain"]["advertise"] = "0.0.0.0:8307"
    with pytest.raises(ConfigError, match=r"interdomain\.advertise: must be where peers reach"):
        km_config.parse(a, tmp_path / "km.yaml")
