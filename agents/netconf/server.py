"""NETCONF over SSH (RFC 6242) for one agent: an asyncssh listener with subsystem `netconf`.

Only I/O lives here: authentication, the SSH channel, and handing bytes to `Session`.
Many agents share one process and one event loop; each costs one listening socket and a
few objects, and each session is driven by asyncssh callbacks (no task or thread per
session).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncssh
from lxml import etree

from agents.access.control import AccessControl
from agents.access.users import Accounts
from agents.datastore import Datastore, DatastoreName
from agents.netconf import authz
from agents.netconf.confirmed import CONFIRMED_COMMIT_CAPABILITY
from agents.netconf.errors import base_element
from agents.netconf.framing import DEFAULT_MAX_MESSAGE_SIZE
from agents.netconf.push.model import Limits
from agents.netconf.push.publisher import Publisher
from agents.netconf.rpcs import MONITORING_NS, NOTIFICATION_NS
from agents.netconf.session import BASE_1_0, BASE_1_1, Session, SessionState
from agents.netconf.state import AgentState
from agents.netconf.xpath import XPATH_CAPABILITY
from common.audit import AuditLog

log = logging.getLogger(__name__)


BASE_CAPABILITIES = (
    BASE_1_0,
    BASE_1_1,
    "urn:ietf:params:netconf:capability:writable-running:1.0",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:validate:1.1",
    CONFIRMED_COMMIT_CAPABILITY,
    "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
    "urn:ietf:params:netconf:capability:notification:1.0",
    "urn:ietf:params:netconf:capability:interleave:1.0",
    XPATH_CAPABILITY,
    f"{MONITORING_NS}?module=ietf-netconf-monitoring&revision=2010-10-04",
)


@dataclass(frozen=True)
class NetconfCredentials:
    """Who may log in. `authorized_keys` are OpenSSH public key lines."""

    username: str
    password: str = field(repr=False)
    authorized_keys: tuple[str, ...]
    host_key_path: Path


# AEAD with AES first: one library call per packet. asyncssh's chacha20-poly1305 builds six
# cipher contexts per packet, which halved the agents' <get> throughput (bench/netconf_get.py).
# SSH lets the client pick among what the server offers, so chacha20 is left out; AES-CTR
# stays for clients without GCM (paramiko prefers it, and pays an HMAC per packet).
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)

# Linux only; elsewhere replies simply go out as asyncssh sends them.
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)


class _SocketOptions(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


class _Channel:
    """The `Transport` of a session: an SSH channel in binary mode.

    asyncssh sends an SSH_MSG_IGNORE packet ahead of every data packet, so each reply would
    cost two TCP sends; corking the socket around the write makes them one segment (about
    a fifth less server CPU per <get> on loopback, and one wake-up of the client).
    """

    def __init__(self, channel: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = channel
        self._socket: _SocketOptions | None = (
            channel.get_extra_info("socket") if _TCP_CORK is not None else None
        )

    def write(self, data: bytes) -> None:
        corked = self._cork(1)
        try:
            self._channel.write(data)
        finally:
            if corked:
                self._cork(0)

    def _cork(self, value: int) -> bool:
        if self._socket is None or _TCP_CORK is None:
            return False
        try:
            self._socket.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, value)
        except OSError:  # not TCP, or already closed: write uncorked from now on
            self._socket = None
            return False
        return True

    def close(self) -> None:
        self._channel.close()

    def pending(self) -> int:
        """Bytes written to the channel that SSH has not sent yet (the client is slow)."""
        return self._channel.get_write_buffer_size()


class _NetconfSSHSession(asyncssh.SSHServerSession[bytes]):
    """Accepts only the `netconf` subsystem and feeds a `Session`."""

    def __init__(self, agent: AgentState, hello_timeout_s: float) -> None:
        self._agent = agent
        self._hello_timeout_s = hello_timeout_s
        self._session: Session | None = None
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._subsystem = False
        self._hello_timer: asyncio.TimerHandle | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = chan

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        self._subsystem = subsystem == "netconf"
        return self._subsystem

    def session_started(self) -> None:
        if not self._subsystem or self._channel is None:
            if self._channel is not None:
                self._channel.close()
            return
        peer = self._channel.get_extra_info("peername")
        channel = _Channel(self._channel)
        self._session = Session(
            self._agent,
            channel,
            username=str(self._channel.get_extra_info("username") or ""),
            source_host=str(peer[0]) if peer else None,
            backlog=channel.pending,
        )
        self._session.start()
        # A client that never says hello must not hold a session forever.
        self._hello_timer = asyncio.get_running_loop().call_later(
            self._hello_timeout_s, self._hello_deadline
        )

    def _hello_deadline(self) -> None:
        if self._session is not None and self._session.state is SessionState.AWAITING_HELLO:
            log.info("session %d: no hello in time", self._session.session_id)
            self._session.close()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._session is not None:
            self._session.data_received(data)

    def eof_received(self) -> bool:
        if self._session is not None:
            self._session.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._session is not None:
            self._session.connection_lost()


class _LoopScheduler:
    """Confirmed-commit timeouts on the event loop that runs the sessions."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, callback)


class _NetconfSSHServer(asyncssh.SSHServer):
    """Password or public-key authentication: of the accounts when the agent has them
    (per-user scrypt password hash and keys), else of the one configured user."""

    def __init__(
        self,
        agent: AgentState,
        credentials: NetconfCredentials,
        authorized: tuple[asyncssh.SSHKey, ...],
        hello_timeout_s: float,
        user_keys: dict[str, frozenset[bytes]] | None = None,
    ) -> None:
        self._agent = agent
        self._hello_timeout_s = hello_timeout_s
        self._credentials = credentials
        self._authorized = {key.public_data for key in authorized}
        self._user_keys = user_keys

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        access = self._agent.access
        if access is not None:
            # scrypt takes tens of milliseconds: not on the loop every session shares.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, access.accounts.password_ok, username, password)
        user_ok = hmac.compare_digest(username.encode(), self._credentials.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._credentials.password.encode())
        return user_ok and password_ok

    def public_key_auth_supported(self) -> bool:
        if self._user_keys is not None:
            return any(self._user_keys.values())
        return bool(self._authorized)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._user_keys is not None:
            return key.public_data in self._user_keys.get(username, frozenset())
        user_ok = hmac.compare_digest(username.encode(), self._credentials.username.encode())
        return user_ok and key.public_data in self._authorized

    def session_requested(self) -> _NetconfSSHSession:
        return _NetconfSSHSession(self._agent, self._hello_timeout_s)


class NetconfServer:
    """The NETCONF front end of one agent's datastore, listening on `host:port`."""

    def __init__(
        self,
        datastore: Datastore,
        credentials: NetconfCredentials,
        host: str,
        port: int = 0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        hello_timeout_s: float = 30.0,
        accounts: Accounts | None = None,
        audit: AuditLog | None = None,
        push_limits: Limits | None = None,
    ) -> None:
        """With `accounts`, users log in with their own password or keys and NACM
        (RFC 8341) decides what each may do; without, `credentials` names the one user, who
        may do everything. `audit` records every configuration change. `push_limits` bound
        the RFC 8639/8641 dynamic subscriptions (defaults: `push.model.Limits`)."""
        schema = datastore.schema
        self.access = AccessControl(accounts, datastore) if accounts is not None else None
        if self.access is not None:
            datastore.add_state_source(self.access.state_json)  # /nacm's counters
        self._user_keys = _user_keys(accounts) if accounts is not None else None
        self._hello_timeout_s = hello_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._credentials = credentials
        self._host = host
        self._requested_port = port
        self._agent = AgentState(
            datastore,
            capabilities=(*BASE_CAPABILITIES, *schema.capabilities()),
            module_texts=schema.module_texts(),
            max_message_size=max_message_size,
            scheduler=_LoopScheduler(),
            access=self.access,
            audit=audit,
        )
        self._push = Publisher(self._agent, _LoopScheduler(), push_limits)
        self._agent.push = self._push
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self.port = 0

    def lock_holder(self) -> int | None:
        """The session holding a lock on running or the candidate (another face must not
        change running under it), or None."""
        for name in (DatastoreName.RUNNING, DatastoreName.CANDIDATE):
            holder = self._agent.lock_holder(name)
            if holder is not None:
                return holder
        return None

    @property
    def push(self) -> Publisher:
        """The agent's dynamic subscriptions (RFC 8639/8641)."""
        return self._push

    @property
    def session_count(self) -> int:
        return len(self._agent.sessions)

    async def start(self) -> None:
        """Listen; `port` is the bound port afterwards."""
        host_key = asyncssh.read_private_key(self._credentials.host_key_path)
        authorized = tuple(
            asyncssh.import_public_key(line)
            for line in self._credentials.authorized_keys
            if line.strip() and not line.lstrip().startswith("#")
        )
        self._acceptor = await asyncssh.listen(
            self._host,
            self._requested_port,
            server_factory=lambda: _NetconfSSHServer(
                self._agent,
                self._credentials,
                authorized,
                self._hello_timeout_s,
                self._user_keys,
            ),
            server_host_keys=[host_key],
            encryption_algs=list(ENCRYPTION_ALGS),
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
        )
        self.port = self._acceptor.get_port()
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Tell every dynamic subscriber its subscriptions end, close every session and stop
        listening."""
        self.push.stop()
        for session in list(self._agent.sessions.values()):
            session.close()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    def publish(self, notification_xml: str) -> None:
        """Send an event (the inner element, e.g. <sdqkdn_link_down ...>) to subscribers.

        It is wrapped in an RFC 5277 <notification> with the current eventTime. Raises
        ValueError if the event is not valid against the YANG notifications. May be called
        from any thread: delivery happens on the server's event loop.
        """
        errors = self._agent.datastore.schema.validate_notification_xml(notification_xml)
        if errors:
            raise ValueError("invalid notification: " + "; ".join(str(e) for e in errors))
        parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
        event = etree.fromstring(notification_xml.encode("utf-8"), parser)
        event_time = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if self._loop is None or current is self._loop:
            self._deliver(event_time, event)
        else:
            self._loop.call_soon_threadsafe(self._deliver, event_time, event)

    def _deliver(self, event_time: str, event: etree._Element) -> None:
        push = self.push
        for session in list(self._agent.sessions.values()):
            subscription = session.subscription
            if subscription is None and not push.has_subscriptions(session.session_id):
                continue
            try:
                if not authz.may_receive(session, event):
                    continue
                contents = push.stream_events(session, event)  # RFC 8639 stream subscriptions
                if subscription is not None:  # the RFC 5277 one
                    content = subscription.content_of(event, self._agent.datastore.schema)
                    if content is not None:
                        contents.append(content)
                for content in contents:
                    session.send_notification(_notification(event_time, content))
            except Exception:  # one subscriber's failure must not cost the others the event
                log.exception(
                    "session %d: notification <%s> not delivered",
                    session.session_id,
                    etree.QName(event).localname,
                )


def _user_keys(accounts: Accounts) -> dict[str, frozenset[bytes]]:
    """Each user's authorized public keys, parsed once (comment lines skipped)."""
    return {
        user.name: frozenset(
            asyncssh.import_public_key(line).public_data
            for line in user.authorized_keys
            if line.strip() and not line.lstrip().startswith("#")
        )
        for user in accounts.users()
    }


def _notification(event_time: str, event: etree._Element) -> bytes:
    notification = base_element("notification", NOTIFICATION_NS)
    etree.SubElement(notification, f"{{{NOTIFICATION_NS}}}eventTime").text = event_time
    notification.append(copy.deepcopy(event))
    return etree.tostring(notification)
