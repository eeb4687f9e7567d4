"""One NETCONF session without I/O: bytes in, bytes out through a `Transport`.

The session owns the framing decoder, the hello exchange (RFC 6241 §8.1, RFC 6242 §4.1),
and turns each <rpc> into an <rpc-reply> via `rpcs.dispatch`. What sessions of one agent
share (datastore, locks, the session table) lives in `AgentState`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Protocol

from lxml import etree

from agents.netconf import rpcs
from agents.netconf.errors import BASE_NS, ErrorTag, ErrorType, NetconfError, base_element
from agents.netconf.framing import (
    FrameDecoder,
    FramingError,
    FramingMode,
    encode_message,
)
from agents.netconf.monitoring import Counter, Counters, ServerCounter, SessionInfo
from agents.netconf.state import AgentState, CloseReason
from agents.netconf.subscription import Subscription

log = logging.getLogger(__name__)

BASE_1_0 = "urn:ietf:params:netconf:base:1.0"
BASE_1_1 = "urn:ietf:params:netconf:base:1.1"


class Transport(Protocol):
    """Where a session writes; the SSH channel in production, a list in tests."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class SessionState(enum.Enum):
    AWAITING_HELLO = "awaiting-hello"
    ESTABLISHED = "established"
    CLOSED = "closed"


class Session:
    def __init__(
        self,
        agent: AgentState,
        transport: Transport,
        username: str = "",
        source_host: str | None = None,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        """`username` and `source_host` are what the transport authenticated (for RFC 6022);
        `backlog` tells how many written bytes the transport has not sent yet."""
        self.agent = agent
        self.session_id = agent.new_session_id()
        self.state = SessionState.AWAITING_HELLO
        self.subscription: Subscription | None = None
        self.info = SessionInfo(self.session_id, username, source_host, agent.clock())
        self.counters = Counters()  # this session's RFC 6022 counters
        self._transport = transport
        self._backlog = backlog
        self._decoder = FrameDecoder(agent.max_message_size)
        # One parser per session: building one costs more than parsing a small <rpc>.
        self._parser = message_parser()
        self._mode = FramingMode.END_OF_MESSAGE

    def start(self) -> None:
        """Register and send our hello (both sides send theirs at once, RFC 6241 §8.1)."""
        self.agent.sessions[self.session_id] = self
        self.agent.counters.bump(ServerCounter.IN_SESSIONS)
        self._transport.write(encode_message(self._hello(), FramingMode.END_OF_MESSAGE))

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._decoder.feed(data)
        while not self.closed:
            try:
                message = self._decoder.next_message()
            except FramingError as error:
                log.info("session %d: framing error: %s", self.session_id, error)
                hello_pending = self.state is SessionState.AWAITING_HELLO
                self.close(CloseReason.BAD_HELLO if hello_pending else CloseReason.DROPPED)
                return
            if message is None:
                return
            if self.state is SessionState.AWAITING_HELLO:
                self._receive_hello(message)
            else:
                self._receive_rpc(message)

    def send_notification(self, notification: bytes) -> None:
        if self.state is SessionState.ESTABLISHED:
            self._count(Counter.OUT_NOTIFICATIONS)
            self._transport.write(encode_message(notification, self._mode))

    def pending_bytes(self) -> int:
        return self._backlog() if self._backlog is not None else 0

    def close(self, reason: CloseReason = CloseReason.DROPPED) -> None:
        """End the session: release its locks (and roll back its unconfirmed commit),
        forget it, close the transport."""
        if self.state is SessionState.CLOSED:
            return
        if reason is CloseReason.BAD_HELLO:
            self.agent.counters.bump(ServerCounter.IN_BAD_HELLOS)
        elif reason is CloseReason.DROPPED:
            self.agent.counters.bump(ServerCounter.DROPPED_SESSIONS)
        self.state = SessionState.CLOSED
        self.agent.sessions.pop(self.session_id, None)
        self.agent.session_ended(self.session_id)
        self._transport.close()

    def connection_lost(self) -> None:
        self.close()

    # ---- hello -----------------------------------------------------------------------------

    def _hello(self) -> bytes:
        hello = base_element("hello")
        capabilities = etree.SubElement(hello, f"{{{BASE_NS}}}capabilities")
        for capability in self.agent.capabilities:
            etree.SubElement(capabilities, f"{{{BASE_NS}}}capability").text = capability
        etree.SubElement(hello, f"{{{BASE_NS}}}session-id").text = str(self.session_id)
        return etree.tostring(hello, xml_declaration=True, encoding="UTF-8")

    def _receive_hello(self, message: bytes) -> None:
        try:
            hello = parse_message(message, self._parser)
        except NetconfError:
            log.info("session %d: malformed hello", self.session_id)
            self.close(CloseReason.BAD_HELLO)
            return
        if hello.tag != f"{{{BASE_NS}}}hello" or hello.find(f"{{{BASE_NS}}}session-id") is not None:
            log.info("session %d: first message is no valid client hello", self.session_id)
            self.close(CloseReason.BAD_HELLO)
            return
        offered = {
            (element.text or "").strip()
            for element in hello.iterfind(f"{{{BASE_NS}}}capabilities/{{{BASE_NS}}}capability")
        }
        if BASE_1_1 in offered and BASE_1_1 in self.agent.capabilities:
            self._mode = FramingMode.CHUNKED
        elif BASE_1_0 not in offered:
            log.info("session %d: client offers no common base capability", self.session_id)
            self.close(CloseReason.BAD_HELLO)
            return
        self._decoder.set_mode(self._mode)
        self.state = SessionState.ESTABLISHED

    # ---- rpc -------------------------------------------------------------------------------

    def _receive_rpc(self, message: bytes) -> None:
        try:
            rpc = parse_message(message, self._parser)
        except NetconfError as error:
            self._count(Counter.IN_BAD_RPCS)
            self._count(Counter.OUT_RPC_ERRORS)
            self._send(rpcs.error_reply(None, error.errors))
            return
        outcome = rpcs.dispatch(self, rpc)
        self._count(Counter.IN_BAD_RPCS if outcome.bad_rpc else Counter.IN_RPCS)
        if outcome.failed:
            self._count(Counter.OUT_RPC_ERRORS)
        self._send(outcome.reply)
        if outcome.close_after:
            self.close(CloseReason.CLOSE_SESSION)

    def _count(self, counter: Counter) -> None:
        self.counters.bump(counter)
        self.agent.counters.bump(counter)

    def _send(self, reply: bytes) -> None:
        if self.state is not SessionState.CLOSED:
            self._transport.write(encode_message(reply, self._mode))


def message_parser() -> etree.XMLParser:
    """No entities, no network, no comments or processing instructions in the tree."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True
    )


def parse_message(message: bytes, parser: etree.XMLParser) -> etree._Element:
    try:
        return etree.fromstring(message.strip(), parser)
    except etree.XMLSyntaxError as error:
        raise NetconfError.of(
            ErrorType.RPC, ErrorTag.MALFORMED_MESSAGE, f"not well-formed XML: {error}"
        ) from error
