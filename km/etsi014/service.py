"""ETSI GS QKD 014 request handling without HTTP: validation, access control, key supply.

The FastAPI app (`app.py`) only maps HTTP to these calls; tests can drive them directly.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from common.tracing import Tracer
from km.access import AccessControl, AccessDenied, Refusal
from km.consumption import ConsumptionLedger
from km.etsi014.schemas import KeyRequest, Status
from km.key_store import KeyBatch, StoredKey
from km.metrics import KmMetrics, NodeMetrics
from km.pqc.mode import Origin
from km.pqc.origins import KeyOrigin, OriginBook
from km.supply import KeySupply, SupplyError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Etsi014Limits:
    key_size_bits: int = 256
    max_key_per_request: int = 128
    min_key_size_bits: int = 64
    max_key_size_bits: int = 1024
    max_sae_id_count: int = 16
    max_key_count: int = 100_000  # reported for same-node pairs (keys drawn on demand)
    relay_buffer: int = 3  # reported as max_key_count for pairs served by the relay


class Etsi014Error(Exception):
    """An answer other than 200: status 400, 401 or 503 and an ETSI `Error` body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        details: Sequence[Mapping[str, Any]] | None = None,
        retry_after_s: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = [dict(d) for d in details] if details else None
        self.retry_after_s = retry_after_s
        # The refusal reason counted in the metrics (km/metrics.py REASONS).
        self.reason = reason or _REASON_OF_STATUS.get(status_code, "no_key")


_REASON_OF_STATUS = {400: "bad_request", 401: "unauthorized", 503: "no_key"}


@dataclass
class Etsi014Service:
    supply: KeySupply
    access: AccessControl
    kme_ids: Mapping[str, str]  # node name -> KME_ID
    limits: Etsi014Limits = field(default_factory=Etsi014Limits)
    counters: Counter[str] = field(default_factory=Counter)
    tracer: Tracer = field(default_factory=lambda: Tracer("km", None))  # lab timeline
    origins: OriginBook | None = None  # key origins for key_extension (km/pqc); None: omitted

    def key_extensions(
        self, keys: Sequence[StoredKey], peer: str
    ) -> Mapping[str, Mapping[str, str]] | None:
        """key_extension of each key: its origin and key mode. `peer`: the other SAE; keys
        not recorded are local (peer at this node) or relayed over QKD."""
        if self.origins is None:
            return None
        local = self.supply.sae_nodes.get(peer) == self.supply.node
        default = KeyOrigin(Origin.LOCAL if local else Origin.QKD, None)
        if local:
            self.origins.counted(Origin.LOCAL, len(keys))
        return self.origins.of_keys(keys, default)

    metrics: NodeMetrics = field(default_factory=lambda: KmMetrics.off().for_node("-"))
    # Bits handed out per (master, slave), reported to the agent (None: not counted).
    consumption: ConsumptionLedger | None = None

    def status(self, caller: str, slave: str) -> Status:
        self._known_caller(caller)
        slave_node = self._node_of_peer(slave)
        denied = self.access.policy.decide(caller, [slave], self.limits.min_key_size_bits)
        if denied is not None:
            self._refused(denied.status_code, "status")
            raise Etsi014Error(denied.status_code, denied.message)
        ready = self.supply.ready_count(caller, slave)
        limits = self.limits
        self.counters["status_requests"] += 1
        return Status(
            source_KME_ID=self.kme_ids.get(self.supply.node, self.supply.node),
            target_KME_ID=self.kme_ids.get(slave_node, slave_node),
            master_SAE_ID=caller,
            slave_SAE_ID=slave,
            key_size=limits.key_size_bits,
            stored_key_count=limits.max_key_count if ready is None else ready,
            max_key_count=limits.max_key_count if ready is None else limits.relay_buffer,
            max_key_per_request=limits.max_key_per_request,
            max_key_size=limits.max_key_size_bits,
            min_key_size=limits.min_key_size_bits,
            max_SAE_ID_count=limits.max_sae_id_count,
            status_extension={
                "source_node": self.supply.node,
                "target_node": slave_node,
                "key_source": "csprng" if ready is None else "relay",
                "counters": {**self.counters, **self.access.snapshot()},
            },
        )

    async def enc_keys(self, caller: str, slave: str, request: KeyRequest) -> Sequence[StoredKey]:
        started = time.perf_counter()
        try:
            keys = await self._enc_keys(caller, slave, request)
        except Etsi014Error as exc:
            self.metrics.refused("enc_keys", caller, slave, exc.reason)
            raise
        bits = _bits(keys)
        elapsed = time.perf_counter() - started
        self.metrics.delivered("enc_keys", caller, slave, len(keys), bits, elapsed)
        if self.consumption is not None:
            self.consumption.add(caller, slave, len(keys), bits)
        return keys

    async def _enc_keys(self, caller: str, slave: str, request: KeyRequest) -> Sequence[StoredKey]:
        size = self.limits.key_size_bits if request.size is None else request.size
        self._check_request(request.number, size, request)
        self._known_caller(caller)
        slaves = list(dict.fromkeys([slave, *request.additional_slave_SAE_IDs]))
        for peer in slaves:
            self._node_of_peer(peer)
        if caller in slaves:
            self._refused(400, "enc_keys")
            raise Etsi014Error(400, "the master SAE cannot be one of the slave SAEs")
        self._check_access(caller, slaves, request.number, size, "enc_keys")
        self.tracer.emit("enc_keys.received", master=caller, slaves=slaves, number=request.number)
        try:
            keys = await self.supply.enc_keys(caller, slaves, request.number, size)
        except SupplyError as exc:
            self._refused(exc.status_code, "enc_keys")
            raise Etsi014Error(exc.status_code, exc.message, reason=exc.reason) from None
        self.counters["enc_keys_requests"] += 1
        self.counters["keys_delivered_to_masters"] += len(keys)
        if self.tracer.enabled:  # key_IDs formatted only for a lab timeline
            self.tracer.emit("enc_keys.sent", master=caller, key_ids=_key_ids(keys))
        log.debug("enc_keys %s -> %s: %d key(s) of %d bits", caller, slaves, len(keys), size)
        return keys

    def dec_keys(self, caller: str, master: str, key_ids: Sequence[UUID]) -> list[StoredKey]:
        started = time.perf_counter()
        try:
            keys = self._dec_keys(caller, master, key_ids)
        except Etsi014Error as exc:
            self.metrics.refused("dec_keys", master, caller, exc.reason)
            raise
        bits = _bits(keys)
        elapsed = time.perf_counter() - started
        self.metrics.delivered("dec_keys", master, caller, len(keys), bits, elapsed)
        if self.consumption is not None:
            self.consumption.add(master, caller, len(keys), bits)
        return keys

    def _dec_keys(self, caller: str, master: str, key_ids: Sequence[UUID]) -> list[StoredKey]:
        self._known_caller(caller)
        self._node_of_peer(master)
        if not key_ids:
            raise Etsi014Error(400, "no key_ID given")
        if len(key_ids) > self.limits.max_key_per_request:
            self._refused(400, "dec_keys")
            raise Etsi014Error(
                400, f"at most {self.limits.max_key_per_request} key_IDs per request"
            )
        self._check_access(caller, [master], len(key_ids), 0, "dec_keys")
        self.tracer.emit("dec_keys.received", slave=caller, master=master)
        try:
            keys = self.supply.dec_keys(caller, master, [str(k) for k in key_ids])
        except SupplyError as exc:
            self._refused(exc.status_code, "dec_keys")
            raise Etsi014Error(exc.status_code, exc.message, reason=exc.reason) from None
        self.counters["dec_keys_requests"] += 1
        self.counters["keys_delivered_to_slaves"] += len(keys)
        self.tracer.emit("dec_keys.sent", slave=caller, key_ids=[k.key_id for k in keys])
        log.debug("dec_keys %s <- %s: %d key(s)", caller, master, len(keys))
        return keys

    def _check_request(self, number: int, size: int, request: KeyRequest) -> None:
        limits = self.limits
        problems: list[dict[str, Any]] = []
        if not 1 <= number <= limits.max_key_per_request:
            problems.append({"number": f"must be 1..{limits.max_key_per_request}"})
        if size % 8 or not limits.min_key_size_bits <= size <= limits.max_key_size_bits:
            problems.append(
                {
                    "size": f"must be a multiple of 8 in "
                    f"{limits.min_key_size_bits}..{limits.max_key_size_bits}"
                }
            )
        if len(request.additional_slave_SAE_IDs) > limits.max_sae_id_count:
            problems.append(
                {"additional_slave_SAE_IDs": f"at most {limits.max_sae_id_count} entries"}
            )
        if request.extension_mandatory:
            names = sorted({name for ext in request.extension_mandatory for name in ext})
            problems.append({"extension_mandatory": f"not supported: {', '.join(names)}"})
        if problems:
            self._refused(400, "enc_keys")
            raise Etsi014Error(400, "invalid key request", problems)

    def _known_caller(self, caller: str) -> None:
        if self.supply.sae_nodes.get(caller) != self.supply.node:
            self._refused(401, "identity")
            raise Etsi014Error(
                401, f"SAE {caller!r} (client certificate) is not served by this KME"
            )

    def _node_of_peer(self, sae: str) -> str:
        node = self.supply.sae_nodes.get(sae)
        if node is None:
            self._refused(400, "unknown_sae")
            raise Etsi014Error(400, f"unknown SAE_ID {sae!r}")
        return node

    def _check_access(
        self, caller: str, peers: Sequence[str], number: int, size: int, what: str
    ) -> None:
        try:
            self.access.check(caller, peers, number, size)
        except AccessDenied as exc:
            self._refused(exc.status_code, what)
            rate = exc.refusal is Refusal.RATE_EXCEEDED
            raise Etsi014Error(
                exc.status_code,
                exc.message,
                retry_after_s=exc.retry_after_s,
                reason="rate" if rate else "access_policy",
            ) from None

    def _refused(self, status_code: int, what: str) -> None:
        self.counters[f"http_{status_code}_{what}"] += 1


def key_container_json(
    keys: Sequence[StoredKey], extensions: Mapping[str, Mapping[str, str]] | None = None
) -> bytes:
    """The ETSI `Key container` of `keys`, serialised directly: the store admits only
    canonical UUID key_IDs and base64 needs no JSON escaping, and building 128 pydantic models
    per answer cost more than the rest of the request (see bench/etsi014.py).
    `extensions`: a `key_extension` object per key_ID (those without one get none)."""
    if isinstance(keys, KeyBatch):
        pairs = zip(keys.key_ids(), keys.materials_base64(), strict=True)
    else:
        pairs = zip(
            (k.key_id for k in keys),
            (base64.b64encode(k.material).decode("ascii") for k in keys),
            strict=True,
        )
    if extensions:
        encoded: dict[int, str] = {}  # few distinct extensions: each serialised once

        def ext(key_id: str) -> str:
            found = extensions.get(key_id)
            if found is None:
                return ""
            text = encoded.get(id(found))
            if text is None:
                text = encoded[id(found)] = ',"key_extension":' + json.dumps(
                    dict(found), separators=(",", ":"), ensure_ascii=True
                )
            return text

        entries = ",".join(
            f'{{"key_ID":"{key_id}","key":"{b64}"{ext(key_id)}}}' for key_id, b64 in pairs
        )
    else:
        entries = ",".join(f'{{"key_ID":"{key_id}","key":"{b64}"}}' for key_id, b64 in pairs)
    return f'{{"keys":[{entries}]}}'.encode("ascii")


def _key_ids(keys: Sequence[StoredKey]) -> list[str]:
    return keys.key_ids() if isinstance(keys, KeyBatch) else [k.key_id for k in keys]


def _bits(keys: Sequence[StoredKey]) -> int:
    """Bits of `keys` without building a key object per key of a batch."""
    if isinstance(keys, KeyBatch):
        return keys.number * keys.size_bits
    return sum(k.size_bits for k in keys)
