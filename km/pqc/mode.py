"""Key modes of an association and the pure choice of the key source they make (no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class KeyMode(enum.Enum):
    QKD_ONLY = "qkd-only"  # no fallback: 503 naming the reason
    QKD_PREFERRED = "qkd-preferred"  # QKD when the path serves it, otherwise post-quantum
    PQC_ONLY = "pqc-only"
    HYBRID_STRICT = "hybrid-strict"  # both sources, or a refusal
    HYBRID_EITHER = "hybrid-either"  # both sources, or whichever one still works

    @staticmethod
    def parse(text: str) -> KeyMode:
        for mode in KeyMode:
            if mode.value == text:
                return mode
        raise ValueError(f"unknown key mode {text!r} (known: {', '.join(MODE_NAMES)})")


DEFAULT_MODE = KeyMode.QKD_PREFERRED
MODE_NAMES = tuple(m.value for m in KeyMode)


class Origin(enum.Enum):
    """Where a delivered key came from (ETSI 014 key_extension `origin`)."""

    QKD = "qkd"  # relayed end to end over QKD links
    PQC = "pqc"  # ML-KEM between the two end key managers
    HYBRID = "hybrid"  # derived from both
    LOCAL = "local"  # master and slave at the same node: the KM's CSPRNG


class Source(enum.Enum):
    """What the supplier does for one request."""

    QKD = "qkd"
    PQC = "pqc"
    HYBRID = "hybrid"
    REFUSE = "refuse"

    @property
    def origin(self) -> Origin:
        return {Source.QKD: Origin.QKD, Source.PQC: Origin.PQC}.get(self, Origin.HYBRID)


@dataclass(frozen=True)
class QkdHealth:
    """What the network last said about the QKD path of one association."""

    usable: bool
    reason: str = ""  # why not, e.g. "key association app1→app2 failed: link down"
    # QKD may still come if waited for (admission not decided yet, link-key pool refilling):
    # a mode without fallback (qkd-only, hybrid-strict) waits; the others switch at once.
    may_wait: bool = False
    # The association is not admitted yet (not registered, or the controller has not
    # decided): the decision is coming, a mode with a fallback waits for it (bounded).
    pending: bool = False

    @staticmethod
    def ok() -> QkdHealth:
        return QkdHealth(True)


def first_choice(mode: KeyMode, qkd: QkdHealth) -> Source:
    """The source to try first, given what is known about the QKD path now."""
    if mode is KeyMode.PQC_ONLY:
        return Source.PQC
    if mode is KeyMode.QKD_ONLY:
        return Source.QKD if qkd.usable or qkd.may_wait else Source.REFUSE
    if mode is KeyMode.QKD_PREFERRED:
        return Source.QKD if qkd.usable else Source.PQC
    if mode is KeyMode.HYBRID_STRICT:
        return Source.HYBRID if qkd.usable or qkd.may_wait else Source.REFUSE
    return Source.HYBRID if qkd.usable else Source.PQC


def waits_for_admission(mode: KeyMode, qkd: QkdHealth) -> bool:
    """Whether a mode with a fallback first waits (bounded) for the admission decision of a
    new association, instead of switching at once: its first keys are then QKD keys when the
    network admits it in time. A mode without fallback waits anyway (`may_wait`)."""
    return qkd.pending and mode in (KeyMode.QKD_PREFERRED, KeyMode.HYBRID_EITHER)


def after_failure(mode: KeyMode, tried: Source, failed: Source) -> Source:
    """The next source once `tried` failed because its `failed` part (QKD or PQC) did."""
    if tried is Source.HYBRID and mode is KeyMode.HYBRID_EITHER:
        return Source.PQC if failed is Source.QKD else Source.QKD
    if tried is Source.QKD and mode is KeyMode.QKD_PREFERRED:
        return Source.PQC
    return Source.REFUSE
