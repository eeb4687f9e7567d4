"""A real NETCONF agent on 127.0.0.1 for tests and benchmarks, with a small fake backend.

The agent (Datastore + NetconfServer) runs on its own event loop in a background thread,
so that blocking clients (ncclient, netconf-console2) can drive it from the caller's
thread. Keys are generated fresh in the given directory.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import ncclient.transport.session
from lxml import etree
from ncclient import manager

from agents.access.cert_names import CertNames
from agents.access.users import Accounts, User, hash_password
from agents.datastore import Datastore
from agents.netconf.framing import FrameDecoder
from agents.netconf.server import NetconfCredentials, NetconfServer
from agents.restconf.protocol import Restconf
from agents.restconf.server import BasicAuth, RestconfApp, RestconfServer
from common.audit import AuditLog
from common.config import Address, TlsFiles
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
NODE_ID = "11111111-1111-4111-8111-111111111111"
LINK_ID = "22222222-2222-4222-8222-222222222222"
USERNAME = "netconf"
PASSWORD = "s3cret-for-tests"
INITIAL_RUNNING = (
    f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id>'
    "<qkdn_location_id>lab</qkdn_location_id></qkd_node>"
)
DEADLINE_S = 10.0

# ncclient polls its reply queue every TICK seconds; the default 0.1 s would cost 100 ms/RPC.
NCCLIENT_TICK_S = 0.001

_T = TypeVar("_T")


class FakeBackend:
    """Records what the datastore hands over; refuses when told to."""

    def __init__(self) -> None:
        self.veto_reason: str | None = None
        self.applied: list[dict[str, Any]] = []
        self.vetoed: list[dict[str, Any]] = []

    def veto(self, new_running: dict[str, Any]) -> str | None:
        if self.veto_reason is not None:
            self.vetoed.append(new_running)
        return self.veto_reason

    def apply(self, new_running: dict[str, Any]) -> None:
        self.applied.append(copy.deepcopy(new_running))

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        node = running.get("etsi-qkd-sdn-node:qkd_node", {})
        links = node.get("qkd_links", {}).get("qkd_link", [])
        state: dict[str, Any] = {"qkdn_status": "etsi-qkd-node-types:OPERATING"}
        if links:
            state["qkd_links"] = {
                "qkd_link": [
                    {"qkdl_id": link["qkdl_id"], "qkdl_performance": {"skr": 1000, "eskr": 900}}
                    for link in links
                ]
            }
        return {"etsi-qkd-sdn-node:qkd_node": state}


@dataclass(frozen=True)
class ClientKeys:
    private_key_path: Path
    public_line: str


def make_keys(directory: Path) -> tuple[Path, ClientKeys]:
    """A host key file and a client key pair, generated fresh."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_path = directory / "host_key"
    host_key.write_private_key(host_key_path)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_path = directory / "client_key"
    client_key.write_private_key(client_path)
    public_line = client_key.export_public_key().decode().strip()
    return host_key_path, ClientKeys(client_path, public_line)


class AgentThread:
    """One agent's NETCONF server on an event loop in a daemon thread."""

    def __init__(
        self,
        directory: Path,
        backend: FakeBackend,
        max_message_size: int,
        hello_timeout_s: float = 30.0,
        accounts: Accounts | None = None,
        audit: AuditLog | None = None,
        initial_running: str = INITIAL_RUNNING,
        restconf_tls: TlsFiles | None = None,
        restconf_certs: CertNames | None = None,
    ) -> None:
        self.directory = directory
        self.restconf_tls = restconf_tls
        self.restconf_certs = restconf_certs
        self.restconf: RestconfServer | None = None
        self.accounts = accounts
        self.audit = audit
        self.initial_running = initial_running
        self.backend = backend
        self.host_key_path, self.client_keys = make_keys(directory)
        self.persist_path = directory / "running.xml"
        self._max_message_size = max_message_size
        self._hello_timeout_s = hello_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: NetconfServer | None = None
        self.datastore: Datastore | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def start(self) -> None:
        self._thread.start()
        self.call(self._start)

    async def _start(self) -> None:
        self.datastore = Datastore(
            Schema.default(), self.backend, self.persist_path, self.initial_running
        )
        credentials = NetconfCredentials(
            USERNAME, PASSWORD, (self.client_keys.public_line,), self.host_key_path
        )
        self.server = NetconfServer(
            self.datastore,
            credentials,
            "127.0.0.1",
            max_message_size=self._max_message_size,
            hello_timeout_s=self._hello_timeout_s,
            accounts=self.accounts,
            audit=self.audit,
        )
        await self.server.start()
        if self.restconf_tls is not None:
            logins = self.accounts or Accounts([User(USERNAME, "admin", hash_password(PASSWORD))])
            restconf = Restconf(
                self.datastore, self.server.access, self.audit, self.server.lock_holder
            )
            app = RestconfApp(restconf, BasicAuth(logins), self.restconf_certs)
            self.restconf = RestconfServer(app, self.restconf_tls, Address("127.0.0.1", 0))
            await self.restconf.start()

    @property
    def restconf_url(self) -> str:
        assert self.restconf is not None
        return self.restconf.url

    def call(self, factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run a coroutine on the agent's loop and wait for it (with a deadline)."""
        return asyncio.run_coroutine_threadsafe(factory(), self._loop).result(DEADLINE_S)

    def publish(self, xml: str) -> None:
        server = self.server
        assert server is not None

        async def publish() -> None:
            server.publish(xml)

        self.call(publish)

    def session_count(self) -> int:
        server = self.server
        assert server is not None

        async def count() -> int:
            return server.session_count

        return self.call(count)

    def stop(self) -> None:
        if self.restconf is not None:
            self.call(self.restconf.stop)
        if self.server is not None:
            self.call(self.server.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEADLINE_S)
        self._loop.close()


@contextmanager
def running_agent(
    directory: Path,
    backend: FakeBackend | None = None,
    max_message_size: int = 1024 * 1024,
    hello_timeout_s: float = 30.0,
    accounts: Accounts | None = None,
    audit: AuditLog | None = None,
    initial_running: str = INITIAL_RUNNING,
    restconf_tls: TlsFiles | None = None,
    restconf_certs: CertNames | None = None,
) -> Iterator[AgentThread]:
    """`accounts`: per-user logins and NACM (none: USERNAME may do everything);
    `restconf_tls`: also serve RESTCONF over HTTPS with this certificate; `restconf_certs`:
    the client certificates it maps to accounts."""
    agent = AgentThread(
        directory,
        backend or FakeBackend(),
        max_message_size,
        hello_timeout_s,
        accounts,
        audit,
        initial_running,
        restconf_tls,
        restconf_certs,
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def connect(agent: AgentThread, **options: Any) -> manager.Manager:
    """An ncclient session to the agent (password login unless `options` say otherwise)."""
    ncclient.transport.session.TICK = NCCLIENT_TICK_S
    arguments: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": agent.port,
        "username": USERNAME,
        "password": PASSWORD,
        "hostkey_verify": False,
        "look_for_keys": False,
        "allow_agent": False,
        "timeout": DEADLINE_S,
    }
    arguments.update(options)
    return manager.connect(**arguments)


class NullBackend:
    """A node that accepts everything and reports no state."""

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return None

    def apply(self, new_running: dict[str, Any]) -> None:
        return None

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return {}


class MemoryTransport:
    """A session's transport that keeps what the server wrote, decoded into messages."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.decoder.feed(data)

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[etree._Element]:
        found = []
        while (message := self.decoder.next_message()) is not None:
            found.append(etree.fromstring(message))
        return found


CLIENT_HELLO_1_1 = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>"
)

NETCONF_CONSOLE = Path(sys.executable).parent / "netconf-console2"


def netconf_console(
    agent: AgentThread,
    *arguments: str,
    stdin: str | None = None,
    timeout_s: float = DEADLINE_S * 4,
    username: str = USERNAME,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    """netconf-console2 as a user runs it, logged in to `agent` with the password."""
    login = ("--host", "127.0.0.1", "--port", str(agent.port), "-u", username, "-p", password)
    return subprocess.run(
        [str(NETCONF_CONSOLE), *login, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def netconf_console_output(agent: AgentThread, *arguments: str, stdin: str | None = None) -> str:
    """What netconf-console2 prints, asserting it succeeded."""
    result = netconf_console(agent, *arguments, stdin=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
