"""ETSI GS QKD 004 for applications: key streams over gRPC with mutual TLS.

The caller's SAE_ID is the name in its client certificate's role SAN `urn:qkdsdn:sae:<id>`
(common/roles.py; a certificate of another role is refused); the
`source` of OPEN_CONNECT must name the caller (`<sae_id>` or `sae:<sae_id>`).

A key stream joins two SAEs. One end opens it (with an empty key_stream_ID the KM assigns
one), tells its peer the ID out of band, and the peer opens the same ID at its own KM. The key
at index i is the same at both ends, and each end gets each index at most once.

- Both SAEs at this node: the key of index i is drawn from the CSPRNG when the first end asks
  for it and kept (in memory, at most `window` indices) until the other end took it.
- The peer at another node: the end whose SAE_ID sorts first is the stream's *master*. Its KM
  draws the key of index i under key_ID uuid5(stream, i) and hands it to KeySupply.place_keys,
  which relays it to the peer's KM and stores it there; the peer's KM claims that key_ID from
  its store (exactly once). Until it has arrived the slave's GET_KEY waits up to the QoS
  timeout (status 6 after it), or answers 2 at once when no timeout was given.

Streams live in memory: a KM restart closes them (the applications open new ones).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc

from common.config import Address
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from common.roles import Role, peer_identity
from km.access import AccessControl, AccessDenied
from km.consumption import ConsumptionLedger
from km.key_store import StoredKey
from km.supply import KeySupply, SupplyError

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]

STREAM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:qkdsdn:etsi004-stream")
DEFAULT_CHUNK_BYTES = 32
REMOTE_POLL_S = 0.01  # how often a waiting slave looks for a relayed key


class Status(enum.IntEnum):
    """ETSI GS QKD 004 status codes."""

    SUCCESSFUL = 0
    PEER_NOT_CONNECTED = 1
    GET_KEY_INSUFFICIENT_KEY = 2
    GET_KEY_PEER_NOT_CONNECTED = 3
    NO_QKD_CONNECTION = 4
    OPEN_KEY_STREAM_IN_USE = 5
    TIMEOUT = 6
    OPEN_QOS_NOT_MET = 7
    GET_KEY_METADATA_TOO_SMALL = 8


@dataclass(frozen=True)
class StreamLimits:
    min_chunk_bytes: int = 8
    max_chunk_bytes: int = 128
    window: int = 1024  # indices an end may run ahead of the other (memory bound)
    max_streams: int = 1024
    max_wait_s: float = 10.0  # longest GET_KEY wait for a relayed key, whatever the QoS says


@dataclass
class _End:
    sae: str
    is_open: bool = False
    ever_opened: bool = False
    next_index: int = 0
    low: int = 0  # every index below was consumed by this end
    consumed: set[int] = field(default_factory=set)
    in_flight: set[int] = field(default_factory=set)  # asked for, answer not yet given

    def has_consumed(self, index: int) -> bool:
        return index < self.low or index in self.consumed

    def next_free(self, window: int) -> int:
        index = self.next_index
        while index in self.in_flight and index < self.low + window:
            index += 1
        return index

    def consume(self, index: int) -> None:
        self.consumed.add(index)
        while self.low in self.consumed:
            self.consumed.discard(self.low)
            self.low += 1
        self.next_index = max(self.next_index, index + 1)


@dataclass
class _Stream:
    stream_id: str
    ends: dict[str, _End]  # exactly two SAEs
    chunk_bytes: int
    qos: pb.QoS
    remote: bool
    master: str
    pending: dict[int, tuple[bytes, str]] = field(
        default_factory=dict
    )  # index -> (key, who still needs it)

    def peer_of(self, sae: str) -> _End:
        return next(end for name, end in self.ends.items() if name != sae)


def parse_sae_uri(uri: str) -> str:
    return uri.removeprefix("sae:").strip()


def peer_sae(context: Ctx) -> str | None:
    """The SAE_ID of the caller: the name of a certificate with the role sae
    (`urn:qkdsdn:sae:<id>`); None for any other certificate, a node's KM included."""
    caller = peer_identity(context)
    return caller.name if caller is not None and caller.role is Role.SAE else None


class KeyStreamService:
    """The KeyDelivery servicer of one KM for its applications (duck-typed: the generated
    base class is untyped)."""

    def __init__(
        self,
        supply: KeySupply,
        access: AccessControl,
        limits: StreamLimits | None = None,
        draw: Callable[[int], bytes] = secrets.token_bytes,
        consumption: ConsumptionLedger | None = None,
    ) -> None:
        """`consumption`: where each key handed out is counted for the stream's (master,
        slave) pair, as ETSI 014 counts enc_keys and dec_keys (None: not counted)."""
        self.supply = supply
        self.access = access
        self.limits = limits or StreamLimits()
        self.draw = draw
        self.consumption = consumption
        self.streams: dict[str, _Stream] = {}
        self._lock = asyncio.Lock()

    async def OpenConnect(
        self, request: pb.OpenConnectRequest, context: Ctx
    ) -> pb.OpenConnectResponse:
        caller = await self._caller(context)
        source, destination = parse_sae_uri(request.source), parse_sae_uri(request.destination)
        if source != caller:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"source {request.source!r} is not the caller {caller!r} (client certificate)",
            )
        dest_node = self.supply.sae_nodes.get(destination)
        if dest_node is None or destination == caller:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown destination SAE {destination!r}"
            )
        chunk = request.qos.key_chunk_size or DEFAULT_CHUNK_BYTES
        try:
            self.access.check(caller, [destination], 0, chunk * 8)
        except AccessDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        remote = dest_node != self.supply.node
        if remote and self.supply.remote is None:
            return pb.OpenConnectResponse(status=Status.NO_QKD_CONNECTION)
        counter = self._counter_proposal(request.qos, chunk)
        if counter is not None:
            return pb.OpenConnectResponse(status=Status.OPEN_QOS_NOT_MET, qos=counter)
        async with self._lock:
            return self._open(caller, destination, chunk, request, remote)

    def _open(
        self,
        caller: str,
        destination: str,
        chunk: int,
        request: pb.OpenConnectRequest,
        remote: bool,
    ) -> pb.OpenConnectResponse:
        stream_id = request.key_stream_id or str(uuid.uuid4())
        stream = self.streams.get(stream_id)
        if stream is None:
            if len(self.streams) >= self.limits.max_streams:
                return pb.OpenConnectResponse(status=Status.NO_QKD_CONNECTION)
            qos = pb.QoS()
            qos.CopyFrom(request.qos)
            qos.key_chunk_size = chunk
            stream = _Stream(
                stream_id=stream_id,
                ends={caller: _End(caller), destination: _End(destination)},
                chunk_bytes=chunk,
                qos=qos,
                remote=remote,
                master=min(caller, destination),
            )
            self.streams[stream_id] = stream
        elif set(stream.ends) != {caller, destination} or stream.ends[caller].is_open:
            return pb.OpenConnectResponse(status=Status.OPEN_KEY_STREAM_IN_USE)
        elif stream.chunk_bytes != chunk:
            return pb.OpenConnectResponse(status=Status.OPEN_QOS_NOT_MET, qos=stream.qos)
        end = stream.ends[caller]
        end.is_open = end.ever_opened = True
        peer_open = not remote and stream.peer_of(caller).is_open
        log.info("key stream %s opened by %s toward %s", stream_id, caller, destination)
        return pb.OpenConnectResponse(
            status=Status.SUCCESSFUL if peer_open else Status.PEER_NOT_CONNECTED,
            key_stream_id=stream_id,
            qos=stream.qos,
        )

    def _counter_proposal(self, qos: pb.QoS, chunk: int) -> pb.QoS | None:
        limits = self.limits
        if limits.min_chunk_bytes <= chunk <= limits.max_chunk_bytes and not (
            qos.max_bps and qos.min_bps > qos.max_bps
        ):
            return None
        counter = pb.QoS()
        counter.CopyFrom(qos)
        counter.key_chunk_size = min(max(chunk, limits.min_chunk_bytes), limits.max_chunk_bytes)
        if counter.max_bps and counter.min_bps > counter.max_bps:
            counter.min_bps = counter.max_bps
        return counter

    async def GetKey(self, request: pb.GetKeyRequest, context: Ctx) -> pb.GetKeyResponse:
        caller = await self._caller(context)
        stream = self.streams.get(request.key_stream_id)
        if stream is None or caller not in stream.ends or not stream.ends[caller].is_open:
            return pb.GetKeyResponse(status=Status.NO_QKD_CONNECTION)
        end = stream.ends[caller]
        explicit = request.HasField("index")
        index = request.index if explicit else end.next_free(self.limits.window)
        metadata = self._metadata(stream, index)
        if len(metadata) > request.metadata_size and stream.qos.metadata_mimetype:
            return pb.GetKeyResponse(status=Status.GET_KEY_METADATA_TOO_SMALL, index=index)
        if (
            end.has_consumed(index)
            or index in end.in_flight
            or index >= end.low + self.limits.window
        ):
            return pb.GetKeyResponse(status=Status.GET_KEY_INSUFFICIENT_KEY, index=index)
        try:
            self.access.check(caller, [stream.peer_of(caller).sae], 1, stream.chunk_bytes * 8)
        except AccessDenied as exc:
            if exc.status_code == 503:  # rate: ETSI 004 has no code of its own for it
                return pb.GetKeyResponse(status=Status.GET_KEY_INSUFFICIENT_KEY, index=index)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        # Reserve the index before any await: two concurrent calls never fetch the same one.
        end.in_flight.add(index)
        end.next_index = max(end.next_index, index + 1)
        try:
            if stream.remote:
                status, key = await self._remote_key(stream, caller, index)
            else:
                status, key = self._local_key(stream, caller, index)
        finally:
            end.in_flight.discard(index)
        if status is not Status.SUCCESSFUL:
            if not explicit:  # the next call without an index asks for this one again
                end.next_index = min(end.next_index, index)
            return pb.GetKeyResponse(status=status, index=index)
        end.consume(index)
        if self.consumption is not None:
            slave = stream.peer_of(stream.master).sae
            self.consumption.add(stream.master, slave, 1, len(key) * 8)
        return pb.GetKeyResponse(
            status=Status.SUCCESSFUL, key_buffer=key, index=index, metadata=metadata
        )

    def _local_key(self, stream: _Stream, caller: str, index: int) -> tuple[Status, bytes]:
        peer = stream.peer_of(caller)
        if not peer.is_open:
            return Status.GET_KEY_PEER_NOT_CONNECTED, b""
        held = stream.pending.get(index)
        if held is not None:
            key, needed_by = held
            if needed_by != caller:
                return Status.GET_KEY_INSUFFICIENT_KEY, b""
            del stream.pending[index]
            return Status.SUCCESSFUL, key
        if len(stream.pending) >= self.limits.window:
            return Status.GET_KEY_INSUFFICIENT_KEY, b""
        key = self.draw(stream.chunk_bytes)
        stream.pending[index] = (key, peer.sae)
        return Status.SUCCESSFUL, key

    async def _remote_key(self, stream: _Stream, caller: str, index: int) -> tuple[Status, bytes]:
        key_id = str(uuid.uuid5(STREAM_NAMESPACE, f"{stream.stream_id}:{index}"))
        peer = stream.peer_of(caller).sae
        if caller == stream.master:
            key = StoredKey(
                key_id, self.draw(stream.chunk_bytes), stream.chunk_bytes * 8, caller, (peer,), None
            )
            try:
                await self.supply.place_keys([key])
            except ValueError:  # that key_ID exists already: the index was served
                return Status.GET_KEY_INSUFFICIENT_KEY, b""
            except SupplyError as exc:
                log.warning("stream %s index %d not relayed: %s", stream.stream_id, index, exc)
                return Status.NO_QKD_CONNECTION, b""
            return Status.SUCCESSFUL, key.material
        wait_s = min(stream.qos.timeout / 1000.0, self.limits.max_wait_s)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                (got,) = self.supply.dec_keys(caller, stream.master, [key_id])
                return Status.SUCCESSFUL, got.material
            except SupplyError:
                pass
            if time.monotonic() >= deadline:
                return (Status.TIMEOUT if wait_s > 0 else Status.GET_KEY_INSUFFICIENT_KEY), b""
            await asyncio.sleep(REMOTE_POLL_S)

    @staticmethod
    def _metadata(stream: _Stream, index: int) -> bytes:
        if stream.qos.metadata_mimetype != "application/json":
            return b""
        return f'{{"key_stream_id":"{stream.stream_id}","index":{index}}}'.encode()

    async def Close(self, request: pb.CloseRequest, context: Ctx) -> pb.CloseResponse:
        caller = await self._caller(context)
        async with self._lock:
            stream = self.streams.get(request.key_stream_id)
            if stream is None or caller not in stream.ends or not stream.ends[caller].is_open:
                return pb.CloseResponse(status=Status.NO_QKD_CONNECTION)
            stream.ends[caller].is_open = False
            if stream.remote or not any(end.is_open for end in stream.ends.values()):
                del self.streams[stream.stream_id]
        log.info("key stream %s closed by %s", request.key_stream_id, caller)
        return pb.CloseResponse(status=Status.SUCCESSFUL)

    async def GetKeyBatch(
        self, request: pb.GetKeyBatchRequest, context: Ctx
    ) -> pb.GetKeyBatchResponse:
        """Served by the QKD modules to their key manager only, not to applications."""
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "GetKeyBatch is not served to applications"
        )
        raise AssertionError("unreachable: abort raises")

    async def _caller(self, context: Ctx) -> str:
        sae = peer_sae(context)
        if sae is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "the client certificate is not an application's (urn:qkdsdn:sae:SAE_ID)",
            )
        assert sae is not None
        if self.supply.sae_nodes.get(sae) != self.supply.node:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"SAE {sae!r} is not served by this KM"
            )
        return sae


async def start_app_server(
    service: KeyStreamService, cert: Path, key: Path, ca: Path, address: Address
) -> tuple[grpc.aio.Server, int]:
    """Serves `service` on `address` with mutual TLS; returns the server and its port."""
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca.read_bytes(),
        require_client_auth=True,
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # a taken port fails loudly
    add_servicer = cast(
        Callable[[KeyStreamService, grpc.aio.Server], None],
        pb_grpc.add_KeyDeliveryServicer_to_server,
    )
    add_servicer(service, server)
    bound = server.add_secure_port(str(address), credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {address} for ETSI 004")
    await server.start()
    return server, bound
