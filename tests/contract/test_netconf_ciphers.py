"""The agent offers AES ciphers only: clients negotiate AES-GCM (or AES-CTR), never chacha20."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from agents.netconf.server import ENCRYPTION_ALGS
from tests.harness.netconf import PASSWORD, USERNAME, connect, running_agent


async def _negotiated(port: int, **options: object) -> str:
    async with asyncssh.connect(
        "127.0.0.1",
        port,
        username=USERNAME,
        password=PASSWORD,
        known_hosts=None,
        client_keys=None,
        **options,
    ) as connection:
        return str(connection.get_extra_info("send_cipher"))


def test_an_asyncssh_client_with_its_defaults_gets_aes_gcm(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        cipher = asyncio.run(_negotiated(agent.port))
    assert cipher in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def test_a_client_that_only_speaks_chacha20_is_refused(tmp_path: Path) -> None:
    # Either side may notice first that no cipher is common: the client then reports its
    # own key exchange failure, or the server's disconnect (ConnectionLost). Both refuse.
    refused = (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost)
    with running_agent(tmp_path) as agent:
        with pytest.raises(refused):
            asyncio.run(_negotiated(agent.port, encryption_algs=["chacha20-poly1305@openssh.com"]))
        assert agent.session_count() == 0


def test_ncclient_negotiates_one_of_the_offered_ciphers(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        handle = connect(agent)
        try:
            cipher = handle._session.transport.remote_cipher
            assert handle.get_config(source="running").ok
        finally:
            handle.close_session()
    assert cipher in ENCRYPTION_ALGS
