"""The key supply toward another node under each association's key mode (a `RemoteSupplier`).

It wraps the QKD relay supplier: for each request it asks what the network last said about
the QKD path (`health`), lets the mode choose the source (km/pqc/mode.py), and on a failure
of one source moves to the next the mode allows, in the same request. Every key handed out
is recorded with its origin (key_extension of the ETSI 014 answer, and the metrics hook).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from common.tracing import Tracer
from km.key_store import StoredKey
from km.pqc.health import PathIdentity
from km.pqc.mode import (
    KeyMode,
    Origin,
    QkdHealth,
    Source,
    after_failure,
    first_choice,
    waits_for_admission,
)
from km.pqc.origins import KeyOrigin, OriginBook
from km.pqc.provider import PqcProvider, PqcSideFailed, QkdSideFailed
from km.supply import RemoteSupplier, SupplyError

log = logging.getLogger(__name__)

Health = Callable[[str, Sequence[str], str], QkdHealth]  # (master, slaves, slave node)
# (master, slaves, slave node, size_bits, timeout): registers the association if needed and
# returns once admitted; raises SupplyError when refused, failed or not admitted in time.
Admit = Callable[[str, Sequence[str], str, int, float], Awaitable[object]]


# A path whose relay failed is tried again after this long even if the controller did not
# reinstall it (a KM on it restarted, a pool refilled): one request then pays the retry.
RETRY_FAILED_PATH_S = 5.0


class KeyModeSupplier:
    def __init__(
        self,
        qkd: RemoteSupplier,
        pqc: PqcProvider,
        mode_of: Callable[[str, str], KeyMode],
        health: Health,
        origins: OriginBook,
        *,
        admit: Admit,
        admission_wait_s: float,
        installed: Callable[[str, Sequence[str], str], PathIdentity | None] = lambda *_: None,
        tracer: Tracer | None = None,
    ) -> None:
        self.qkd = qkd
        self.pqc = pqc
        self.mode_of = mode_of
        self.health = health
        self.origins = origins
        self.installed = installed
        self.admit = admit
        self.admission_wait_s = admission_wait_s
        self.tracer = tracer or Tracer("km", None)
        self._failed_paths: dict[PathIdentity, float] = {}
        # Associations whose admission was waited for in vain (no decision in time): later
        # requests register again but do not wait, until the node's tree shows a decision.
        self._undecided: set[tuple[str, tuple[str, ...], str]] = set()
        self.switches = 0  # requests served by another source than their first choice

    def failed_paths(self) -> frozenset[PathIdentity]:
        """Installed paths whose relay failed lately (the health check skips them)."""
        now = time.monotonic()
        return frozenset(p for p, t in self._failed_paths.items() if now - t < RETRY_FAILED_PATH_S)

    def ready_count(self, master: str, slave: str) -> int:
        return self.qkd.ready_count(master, slave)

    async def enc_keys(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
        *,
        keys: Sequence[StoredKey] | None = None,
    ) -> list[StoredKey]:
        if keys is not None:  # multicast across nodes: the same keys relayed over QKD
            placed = await self.qkd.enc_keys(
                master, slaves, slave_node, number, size_bits, keys=keys
            )
            self.origins.record([k.key_id for k in placed], KeyOrigin(Origin.QKD, None), None)
            return placed
        mode = self._mode(master, slaves)
        health = self.health(master, slaves, slave_node)
        if waits_for_admission(mode, health):
            health = await self._admission(master, slaves, slave_node, size_bits)
        elif not health.pending:
            self._undecided.discard((master, tuple(slaves), slave_node))
        source = first_choice(mode, health)
        if source is Source.HYBRID and len(slaves) > 1:
            source = after_failure(mode, Source.HYBRID, Source.PQC)
            health = QkdHealth(health.usable, "hybrid keys serve one slave SAE")
        reasons = [] if health.usable or health.may_wait else [health.reason]
        first = source
        while source is not Source.REFUSE:
            try:
                got = await self._draw(source, mode, master, slaves, slave_node, number, size_bits)
            except QkdSideFailed as exc:
                reasons.append(exc.message)
                self._path_failed(master, slaves, slave_node)
                source = after_failure(mode, source, Source.QKD)
                continue
            except PqcSideFailed as exc:
                reasons.append(exc.message)
                if exc.qkd_keys is not None and mode is KeyMode.HYBRID_EITHER:
                    got, source = exc.qkd_keys, Source.QKD
                else:
                    source = Source.REFUSE
                    continue
            self._delivered(got, source, mode, master, slaves, switched=source is not first)
            return got
        reason = "; ".join(r for r in reasons if r) or "no source of keys"
        self.tracer.emit("keys.refused", master=master, slaves=list(slaves), mode=mode.value)
        raise SupplyError(503, f"key mode {mode.value}: {reason}")

    async def _admission(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        size_bits: int,
    ) -> QkdHealth:
        """Waits at most `admission_wait_s` for the admission of a new association: healthy
        once admitted; a refusal, a failure or an unreachable node ends the wait at once. Once
        a wait ran out, the association's next requests only register it again (no wait)."""
        key = (master, tuple(slaves), slave_node)
        wait = 0.0 if key in self._undecided else self.admission_wait_s
        try:
            await self.admit(master, slaves, slave_node, size_bits, wait)
        except SupplyError as exc:
            if self.health(master, slaves, slave_node).pending:  # no decision (yet)
                self._undecided.add(key)
            else:
                self._undecided.discard(key)
            return QkdHealth(False, exc.message)
        self._undecided.discard(key)
        health = self.health(master, slaves, slave_node)
        return QkdHealth.ok() if health.pending else health

    def mode(self, master: str, slaves: Sequence[str]) -> KeyMode:
        """The key mode of keys for all of `slaves`."""
        return self._mode(master, slaves)

    def _mode(self, master: str, slaves: Sequence[str]) -> KeyMode:
        modes = {self.mode_of(master, slave) for slave in slaves}
        if len(modes) == 1:
            (mode,) = modes
            return mode
        return KeyMode.QKD_ONLY  # slaves with different modes: only what every one accepts

    async def _draw(
        self,
        source: Source,
        mode: KeyMode,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
    ) -> list[StoredKey]:
        if source is Source.QKD:
            try:
                return list(await self.qkd.enc_keys(master, slaves, slave_node, number, size_bits))
            except SupplyError as exc:
                raise QkdSideFailed(exc.message) from None
        return await self.pqc.keys(
            source.origin, mode, master, slaves, slave_node, number, size_bits
        )

    def _path_failed(self, master: str, slaves: Sequence[str], slave_node: str) -> None:
        identity = self.installed(master, slaves, slave_node)
        if identity is not None:
            self._failed_paths[identity] = time.monotonic()

    def _delivered(
        self,
        keys: Sequence[StoredKey],
        source: Source,
        mode: KeyMode,
        master: str,
        slaves: Sequence[str],
        switched: bool,
    ) -> None:
        origin = source.origin
        expires = min((k.expires_at for k in keys if k.expires_at is not None), default=None)
        self.origins.record([k.key_id for k in keys], KeyOrigin(origin, mode), expires)
        if switched:
            self.switches += 1
        if self.tracer.enabled:
            self.tracer.emit(
                "keys.origin",
                master=master,
                slaves=list(slaves),
                origin=origin.value,
                mode=mode.value,
                number=len(keys),
                switched=switched,
            )
