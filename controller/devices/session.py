"""One NETCONF session to one device, over ncclient (blocking; the service runs it in a thread).

This package is the only place that imports ncclient. Its exceptions are mapped to the
controller's own here, and operations check the capabilities they need before sending.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncclient import manager, operations, transport
from ncclient.operations.errors import TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import (
    AuthenticationError,
    SSHError,
    SSHUnknownHostError,
    TransportError,
)
from ncclient.transport.session import NetconfBase, NotificationHandler, SessionListener

from controller.errors import CapabilityMissing, DeviceError, DeviceUnavailable, RpcFailed
from controller.names import NOTIF_NS

log = logging.getLogger(__name__)

CANDIDATE = "urn:ietf:params:netconf:capability:candidate:1.0"
VALIDATE = "urn:ietf:params:netconf:capability:validate:1.1"
VALIDATE_10 = "urn:ietf:params:netconf:capability:validate:1.0"
NOTIFICATION = "urn:ietf:params:netconf:capability:notification:1.0"


class _DirectSendSession(transport.SSHSession):  # type: ignore[misc]
    """ncclient's SSH session, writing each message on the channel from the caller's thread.

    ncclient queues outgoing messages for its reader thread, which looks at the queue only
    between selects of TICK seconds: every RPC waited up to a tick before leaving (3.2 ms
    a <get> at a 2 ms tick, against 1.0 ms written directly). Replies still wake the reader
    thread at once, so TICK may be long (`IDLE_POLL_S`) and idle sessions hardly poll.
    Framing as RFC 6242 says: end-of-message until both hellos announced base:1.1, chunked
    after.
    """

    def __init__(self, device_handler: Any) -> None:
        super().__init__(device_handler)
        self._send_lock = threading.Lock()  # one message at a time on the channel

    def send(self, message: str) -> None:
        if not self.connected:
            raise TransportError("Not connected to NETCONF server")
        data = message.encode()
        if self._base == NetconfBase.BASE_11:
            data = b"\n#%d\n%s\n##\n" % (len(data), data)
        else:
            data += b"]]>]]>"
        with self._send_lock:
            self._channel.sendall(data)


# How often an idle session's two threads (ncclient's reader, paramiko's transport) wake up
# to look around; replies and notifications wake them at once. At their default 0.1 s, 100
# idle sessions woke the controller 2,000 times a second. A stop waits up to this long.
IDLE_POLL_S = 0.5


def _poll_idle_slowly(session: Any) -> None:
    """Sets both idle wake-ups of a connected session to `IDLE_POLL_S` (ncclient's TICK is
    read by every session's reader loop; paramiko's is its socket timeout)."""
    transport.session.TICK = IDLE_POLL_S
    paramiko_transport = getattr(session, "_transport", None)
    sock = getattr(paramiko_transport, "sock", None)
    if sock is not None:
        sock.settimeout(IDLE_POLL_S)


def _connected_socket(host: str, port: int, timeout: float) -> socket.socket:
    """TCP to the agent without Nagle's delay: paramiko leaves it on, and a small request
    behind an unacknowledged segment waited for the peer's delayed ACK (p99 41 ms)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclass(frozen=True)
class DeviceAddress:
    """Where and how to reach a device's agent (from the lab plan)."""

    device_id: str  # the node's qkdn_id
    name: str
    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    host_key_b64: str | None = field(default=None, repr=False)  # pin the agent's host key


def host_key_b64(public_key_file: Path) -> str | None:
    """The base64 blob of an OpenSSH public key file, to pin the host key (None if absent)."""
    try:
        parts = public_key_file.read_text().split()
    except OSError:
        return None
    if len(parts) < 2:
        return None
    base64.b64decode(parts[1], validate=True)  # refuse a corrupt pin early
    return parts[1]


def _abandon(session: Any) -> None:
    """Closes a session whose connect failed half-way (ncclient leaves the transport open)."""
    if session.transport:
        session.close()


class _Listener(SessionListener):  # type: ignore[misc]
    """Receives every message of the session in ncclient's reader thread."""

    def __init__(self, on_notification: Callable[[str], None], on_error: Callable[[str], None]):
        self._on_notification = on_notification
        self._on_error = on_error

    def callback(self, root: tuple[str, dict[str, str]], raw: str) -> None:
        if root[0] == f"{{{NOTIF_NS}}}notification":
            self._on_notification(raw)

    def errback(self, ex: Exception) -> None:
        self._on_error(f"session lost: {type(ex).__name__}: {ex}")


class Pending:
    """RPCs already sent to one device, in order; `wait` reads their replies and raises the
    first failure as the controller's own error."""

    def __init__(self, session: NetconfSession, rpcs: tuple[tuple[str, Any], ...]) -> None:
        self._session = session
        self._rpcs = rpcs

    def wait(self) -> None:
        for name, rpc in self._rpcs:
            self._session._reply_of(name, rpc)


class NetconfSession:
    """A connected session; its plain methods block until the device answers, its `send_`
    methods return once the request is written (`Pending.wait` reads the reply)."""

    def __init__(
        self, address: DeviceAddress, session: Any, handle: Any, device_handler: Any = None
    ) -> None:
        self.address = address
        self._session = session
        self._handle = handle
        self._device_handler = device_handler  # ncclient's, for RPCs sent without waiting
        self.capabilities = frozenset(str(c) for c in handle.server_capabilities)
        self._lost = False  # the reader thread saw the session die

    @staticmethod
    def open(address: DeviceAddress, timeout: float = 10.0) -> NetconfSession:
        handler = manager.make_device_handler({}, None)
        session = _DirectSendSession(handler)
        # no unbounded queue of notifications nobody reads: our listener takes them instead
        builtin = session.get_listener_instance(NotificationHandler)
        if builtin is not None:
            session.remove_listener(builtin)
        try:
            session.connect(
                host=address.host,
                port=address.port,
                sock=_connected_socket(address.host, address.port, timeout),
                username=address.username,
                password=address.password,
                key_filename=address.key_file,
                # with a pin, the agent must present exactly that host key
                hostkey_verify=address.host_key_b64 is not None,
                hostkey_b64=address.host_key_b64,
                allow_agent=False,
                look_for_keys=False,
                timeout=timeout,
            )
        except SSHUnknownHostError:
            _abandon(session)
            raise DeviceUnavailable(
                address.name, "the agent's SSH host key is not the one in the lab plan"
            ) from None
        except AuthenticationError as error:
            _abandon(session)
            raise DeviceUnavailable(address.name, f"authentication failed: {error}") from None
        except (SSHError, TransportError, OSError) as error:
            _abandon(session)
            raise DeviceUnavailable(
                address.name, f"cannot connect to {address.host}:{address.port}: {error}"
            ) from None
        _poll_idle_slowly(session)
        handle = manager.Manager(session, handler, timeout=timeout)
        return NetconfSession(address, session, handle, handler)

    @property
    def connected(self) -> bool:
        return bool(self._handle.connected)

    def has(self, capability: str) -> bool:
        return any(c.split("?")[0] == capability for c in self.capabilities)

    def require(self, capability: str, operation: str) -> None:
        if not self.has(capability):
            raise CapabilityMissing(
                self.address.name, f"{operation} needs {capability}, which the device lacks"
            )

    @contextmanager
    def _mapped(self, operation: str) -> Iterator[None]:
        try:
            yield
        except RPCError as error:
            raise RpcFailed(
                self.address.name,
                f"{operation} refused: {error.tag or 'error'}: {error.message or error}",
            ) from None
        except TimeoutExpiredError:
            raise DeviceError(self.address.name, f"{operation} timed out") from None
        except (TransportError, SSHError, OSError) as error:
            raise DeviceUnavailable(self.address.name, f"{operation} failed: {error}") from None

    # ---------------------------------------------------------------- operations

    def get(self, subtree: str) -> str:
        with self._mapped("get"):
            return str(self._handle.get(filter=("subtree", subtree)).data_xml)

    def get_config(self, subtree: str, source: str = "running") -> str:
        with self._mapped("get-config"):
            return str(self._handle.get_config(source=source, filter=("subtree", subtree)).data_xml)

    def lock(self) -> None:
        self.require(CANDIDATE, "lock of the candidate")
        with self._mapped("lock"):
            self._handle.lock(target="candidate")

    def unlock(self) -> None:
        with self._mapped("unlock"):
            self._handle.unlock(target="candidate")

    def edit_candidate(self, config: str) -> None:
        """edit-config on the candidate; with :validate the device checks the whole candidate
        as part of the edit (test-then-set, RFC 6241 §8.6) and refuses an invalid edit whole,
        so no separate <validate> round trip is needed before a commit."""
        self.require(CANDIDATE, "edit-config on the candidate")
        with self._mapped("edit-config"):
            self._handle.edit_config(**self._edit_params(config))

    def _edit_params(self, config: str) -> dict[str, Any]:
        params: dict[str, Any] = {"target": "candidate", "config": config}
        if self.has(VALIDATE) or self.has(VALIDATE_10):
            params["test_option"] = "test-then-set"
        return params

    def validate_candidate(self) -> None:
        if not (self.has(VALIDATE) or self.has(VALIDATE_10)):
            return  # the commit validates anyway
        with self._mapped("validate"):
            self._handle.validate(source="candidate")

    def commit(self) -> None:
        self.require(CANDIDATE, "commit")
        with self._mapped("commit"):
            self._handle.commit()

    # ------------------------------------------------ sent now, replies read later
    # A transaction sends one step to every node of a path from one thread and only then
    # reads the replies: no thread per device woken per RPC (9 parallel <lock>s: 10.4 ms and
    # 19 ms of controller CPU from worker threads, 5.4 ms and 12 ms sent this way).

    def send_lock(self) -> Pending:
        self.require(CANDIDATE, "lock of the candidate")
        return self._sent(("lock", operations.Lock, {"target": "candidate"}))

    def send_edit(self, config: str) -> Pending:
        """As `edit_candidate` (validated by the device when it can), not waiting."""
        self.require(CANDIDATE, "edit-config on the candidate")
        return self._sent(("edit-config", operations.EditConfig, self._edit_params(config)))

    def send_commit_and_unlock(self) -> Pending:
        """<commit> and <unlock> together: the lock goes either way. A refused commit leaves
        the candidate modified, which no session can lock (RFC 6241 §7.5) until a
        <discard-changes>; `wait` raises the commit's error."""
        self.require(CANDIDATE, "commit")
        return self._sent(
            ("commit", operations.Commit, {}),
            ("unlock", operations.Unlock, {"target": "candidate"}),
        )

    def send_discard(self) -> Pending:
        return self._sent(("discard-changes", operations.DiscardChanges, {}))

    def send_discard_and_unlock(self) -> Pending:
        return self._sent(
            ("discard-changes", operations.DiscardChanges, {}),
            ("unlock", operations.Unlock, {"target": "candidate"}),
        )

    def _sent(self, *steps: tuple[str, type[Any], dict[str, Any]]) -> Pending:
        sent = []
        for name, operation, params in steps:
            with self._mapped(name):
                rpc = operation(
                    self._session,
                    device_handler=self._device_handler,
                    async_mode=True,  # request() returns once the message is written
                    timeout=self._handle.timeout,
                    raise_mode=operations.RaiseMode.ALL,
                )
                sent.append((name, rpc.request(**params)))
        return Pending(self, tuple(sent))

    def _reply_of(self, name: str, rpc: Any) -> None:
        """Waits for the reply of a sent RPC; raises as a blocking call would, mapped."""
        with self._mapped(name):
            if not rpc.event.wait(self._handle.timeout):
                raise TimeoutExpiredError("no reply in time")
            if rpc.error is not None:
                raise rpc.error
            reply = rpc.reply
            reply.parse()
            if reply.error is not None:
                raise reply.error

    def discard_changes(self) -> None:
        with self._mapped("discard-changes"):
            self._handle.discard_changes()

    def subscribe(
        self, on_notification: Callable[[str], None], on_error: Callable[[str], None]
    ) -> None:
        """RFC 5277 subscription; notifications are handed over in ncclient's reader thread
        (no polling)."""
        self.require(NOTIFICATION, "create-subscription")

        def lost(reason: str) -> None:
            self._lost = True  # before anyone hears of it: close() must not send an RPC now
            on_error(reason)

        self._session.add_listener(_Listener(on_notification, lost))
        with self._mapped("create-subscription"):
            self._handle.create_subscription()

    def close(self) -> None:
        try:
            if self._lost:
                # ncclient still says connected until its reader thread has finished; a
                # <close-session> sent now is never answered and blocks for the RPC timeout
                self._session.close()
            elif self._handle.connected:
                self._handle.close_session()
        except Exception as error:  # closing a dead session must not hide the original cause
            log.debug("closing %s: %s", self.address.name, error)
