"""Key bits a key manager handed to SAEs, per (master, slave) pair, and their report to the
node's agent over NodeLink (which publishes them as the 015 `app_statistics`).

`ConsumptionLedger` counts (pure, no I/O); `report_forever` sends its totals to the agent
whenever they changed or the agent's stream was re-opened (an agent restarted lost them).
Totals, never deltas: a lost report loses nothing. Each KM run has its own id, so the agent
tells a restarted KM (totals back to 0) from a KM that delivered nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

REPORT_PERIOD_S = 1.0


@dataclass(frozen=True)
class PairUsage:
    """What one (master, slave) pair received from this KM since the run began."""

    master: str
    slave: str
    keys: int
    bits: int


class ConsumptionLedger:
    """Keys and bits delivered per (master, slave) pair in this KM run."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or uuid.uuid4().hex
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}
        self.revision = 0  # grows with every delivery

    def add(self, master: str, slave: str, keys: int, bits: int) -> None:
        if keys < 0 or bits < 0:
            raise ValueError(f"a delivery cannot be negative: {keys} keys, {bits} bits")
        if not keys and not bits:
            return
        before_keys, before_bits = self._totals.get((master, slave), (0, 0))
        self._totals[(master, slave)] = (before_keys + keys, before_bits + bits)
        self.revision += 1

    def snapshot(self) -> tuple[PairUsage, ...]:
        return tuple(
            PairUsage(master, slave, keys, bits)
            for (master, slave), (keys, bits) in sorted(self._totals.items())
        )

    def bits(self, master: str, slave: str) -> int:
        return self._totals.get((master, slave), (0, 0))[1]


Send = Callable[[str, tuple[PairUsage, ...]], Awaitable[bool]]


async def report_forever(
    ledger: ConsumptionLedger,
    send: Send,
    stream_generation: Callable[[], int],
    period_s: float = REPORT_PERIOD_S,
) -> None:
    """Every `period_s`: sends the ledger's totals if they changed since the last accepted
    report, or if the agent's NodeLink stream was opened again meanwhile (`stream_generation`
    grew). `send` answers whether the agent took them; a refusal is tried again next period."""
    sent: tuple[int, int] | None = None
    while True:
        now = (ledger.revision, stream_generation())
        if now != sent and ledger.revision > 0:
            try:
                if await send(ledger.run, ledger.snapshot()):
                    sent = now
            except Exception:  # the agent may be restarting: next period
                log.debug("consumption report failed", exc_info=True)
        await asyncio.sleep(period_s)
