"""Two-phase reservations of a domain's segment (pure, with `now`): reserve, commit, release,
expire; idempotent by id; each peer held to its policy (SAE globs, rate cap, key modes).

A held reservation counts in admission like an installed intent (`held()`), so local requests
see its rate taken; committing turns it into an ordinary intent with the same id.
"""

from __future__ import annotations

import enum
import fnmatch
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.admission import admit
from controller.config import DomainConfig, PeerDomain
from controller.model import (
    DeviceId,
    KeyRequest,
    Path,
    QoS,
    Reservation,
    Reservations,
    TopologySnapshot,
)
from controller.paths import PathPolicy

UINT32 = 0xFFFFFFFF
REQUEST_FIELDS = (
    "id",
    "master_sae",
    "slave_sae",
    "ingress",
    "egress",
    "rate_bps",
    "key_mode",
    "origin",
)


class HoldState(enum.Enum):
    RESERVED = "reserved"
    COMMITTING = "committing"  # its intent is being installed: it neither expires nor moves
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    BROKEN = "broken"  # committed, then its intent failed (no path left): the origin re-routes


LIVE = (HoldState.RESERVED, HoldState.COMMITTING, HoldState.COMMITTED)


@dataclass(frozen=True)
class ReservationRequest:
    """`POST /interdomain/reservations`: a segment wanted in this domain."""

    id: str
    master_sae: str
    slave_sae: str
    ingress: str | None  # None: the master SAE is in this domain
    egress: str | None  # None: the slave SAE is in this domain
    rate_bps: int
    key_mode: str
    origin: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in REQUEST_FIELDS}

    @staticmethod
    def from_json(data: Any) -> ReservationRequest:
        """The request in a JSON body; ValueError naming the first bad field."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = sorted(set(data) - set(REQUEST_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(REQUEST_FIELDS)})")
        ident = _text(data, "id")
        try:
            if str(uuid.UUID(ident)) != ident:
                raise ValueError
        except ValueError:
            raise ValueError(f"id: {ident!r} is not a lower-case UUID") from None
        rate = data.get("rate_bps")
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= UINT32:
            raise ValueError(f"rate_bps: must be an integer from 0 to {UINT32}, not {rate!r}")
        request = ReservationRequest(
            ident,
            _text(data, "master_sae"),
            _text(data, "slave_sae"),
            _optional(data, "ingress"),
            _optional(data, "egress"),
            rate,
            _text(data, "key_mode"),
            _text(data, "origin"),
        )
        if request.ingress is None and request.egress is None:
            raise ValueError("ingress: ingress and egress cannot both be null (no segment)")
        if request.master_sae == request.slave_sae:
            raise ValueError("slave_sae: the same SAE as master_sae")
        return request


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a non-empty string, not {value!r}")
    return value


def _optional(data: Mapping[str, Any], name: str) -> str | None:
    if data.get(name) is None:
        return None
    return _text(data, name)


@dataclass(frozen=True)
class Hold:
    """A reservation of this domain's segment and where it stands."""

    request: ReservationRequest
    path: Path  # internal: never shown to a peer
    bandwidth: int
    state: HoldState
    expires_at: float
    reason: str = ""

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def origin(self) -> str:
        return self.request.origin

    def to_json(self) -> dict[str, Any]:
        """What a peer or viewer may see: the request and the state, not the path."""
        return {
            **self.request.to_json(),
            "state": self.state.value,
            "expires_at": self.expires_at,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Refusal:
    status: int  # 400 malformed, 403 policy, 404 unknown, 409 capacity or state
    reason: str


def segment_ends(
    request: ReservationRequest, config: DomainConfig, snapshot: TopologySnapshot
) -> tuple[DeviceId, DeviceId] | Refusal:
    """The nodes of this domain the segment joins (ingress or the master SAE's node, egress
    or the slave SAE's node)."""
    ends: list[DeviceId] = []
    for field_name, border, sae in (
        ("ingress", request.ingress, request.master_sae),
        ("egress", request.egress, request.slave_sae),
    ):
        if border is not None:
            if border not in config.borders:
                return Refusal(
                    400, f"{field_name}: {border} is not a border of domain {config.name}"
                )
            node = border
        else:
            if sae not in config.saes:
                which = "master_sae" if field_name == "ingress" else "slave_sae"
                return Refusal(400, f"{which}: {sae} is not served in domain {config.name}")
            node = config.saes[sae]
        try:
            ends.append(snapshot.resolve(node))
        except KeyError:
            return Refusal(409, f"{field_name}: {border or sae} is not reachable now")
    if ends[0] == ends[1]:
        return Refusal(400, "egress: the segment would begin and end on the same node")
    return ends[0], ends[1]


def policy_refusal(
    request: ReservationRequest, peer: PeerDomain, config: DomainConfig, live_rate: int
) -> Refusal | None:
    """Why `peer`'s policy refuses the request (403), or None."""
    if request.key_mode not in peer.key_modes:
        return Refusal(
            403,
            f"key mode {request.key_mode} is not allowed for domain {peer.name} "
            f"(allowed: {', '.join(peer.key_modes)})",
        )
    own = [s for s in (request.master_sae, request.slave_sae) if s in config.saes]
    for sae in own:
        if not any(fnmatch.fnmatchcase(sae, glob) for glob in peer.allow_saes):
            return Refusal(403, f"SAE {sae} may not be reached from domain {peer.name}")
    if live_rate + request.rate_bps > peer.rate_cap_bps:
        return Refusal(
            403,
            f"rate cap of domain {peer.name} is {peer.rate_cap_bps} bit/s, "
            f"{live_rate} bit/s already reserved",
        )
    return None


def capacity_name(request: ReservationRequest) -> str:
    """The ends as a peer may see them: border names, or the SAEs."""
    return f"{request.ingress or request.master_sae} and {request.egress or request.slave_sae}"


class ReservationBook:
    """Every reservation this domain holds for the two-phase protocol, keyed by id."""

    def __init__(self, ttl_s: float, history: int = 1000) -> None:
        self.ttl_s = ttl_s
        self.history = history
        self._holds: dict[str, Hold] = {}

    def get(self, ident: str) -> Hold | None:
        return self._holds.get(ident)

    def all(self) -> list[Hold]:
        return list(self._holds.values())

    def live_rate(self, origin: str) -> int:
        """The rate the live reservations of `origin` hold (what its rate cap counts)."""
        return sum(
            h.request.rate_bps
            for h in self._holds.values()
            if h.origin == origin and h.state in LIVE
        )

    def held(self) -> Reservations:
        """Rate held by reservations not yet installed as intents (admission counts it; a
        local request cannot pre-empt it: a peer domain holds it)."""
        return Reservations(
            {
                h.id: Reservation(h.id, h.path.links, h.bandwidth, UINT32)  # never pre-empted
                for h in self._holds.values()
                if h.state in (HoldState.RESERVED, HoldState.COMMITTING)
            }
        )

    def decide(
        self,
        request: ReservationRequest,
        ends: tuple[DeviceId, DeviceId],
        snapshot: TopologySnapshot,
        reservations: Reservations,
        policy: PathPolicy,
        now: float,
    ) -> Hold | Refusal:
        """Reserve the segment between `ends` (reservations: every intent and hold), or say
        why not. The same request again (same id) gets the same answer."""
        known = self._holds.get(request.id)
        if known is not None:
            if known.request != request:
                return Refusal(409, f"id {request.id} is already used by another reservation")
            return known
        try:
            key = KeyRequest(
                ends[0],
                ends[1],
                request.master_sae,
                (request.slave_sae,),
                QoS(request.rate_bps, request.rate_bps),
            )
        except ValueError as error:
            return Refusal(400, str(error))
        decision = admit(snapshot, reservations, key, policy)
        if not decision.admitted or decision.path is None:
            return Refusal(409, f"no capacity between {capacity_name(request)}")
        hold = Hold(
            request, decision.path, decision.bandwidth, HoldState.RESERVED, now + self.ttl_s
        )
        self._holds[request.id] = hold
        self._forget()
        return hold

    def begin_commit(self, ident: str, now: float) -> Hold | Refusal:
        hold = self._holds.get(ident)
        if hold is None:
            return Refusal(404, f"no reservation {ident}")
        if hold.state in (HoldState.COMMITTED, HoldState.COMMITTING):
            return hold
        if hold.state is HoldState.RESERVED and now >= hold.expires_at:
            self._set(hold, HoldState.EXPIRED, "expired before its commit")
            return Refusal(409, f"reservation {ident} expired before its commit")
        if hold.state is not HoldState.RESERVED:
            return Refusal(409, f"reservation {ident} is {hold.state.value}")
        return self._set(hold, HoldState.COMMITTING)

    def broken(self, ident: str, reason: str) -> Hold:
        return self._set(self._holds[ident], HoldState.BROKEN, reason)

    def committed(self, ident: str) -> Hold:
        return self._set(self._holds[ident], HoldState.COMMITTED)

    def release(self, ident: str, reason: str = "") -> Hold | Refusal:
        hold = self._holds.get(ident)
        if hold is None:
            return Refusal(404, f"no reservation {ident}")
        if hold.state in (HoldState.RELEASED, HoldState.EXPIRED):
            return hold
        return self._set(hold, HoldState.RELEASED, reason)

    def expire(self, now: float) -> list[Hold]:
        """Releases every reservation still uncommitted at its deadline; returns them."""
        due = [
            h for h in self._holds.values() if h.state is HoldState.RESERVED and now >= h.expires_at
        ]
        return [self._set(h, HoldState.EXPIRED, "not committed in time") for h in due]

    def _set(self, hold: Hold, state: HoldState, reason: str = "") -> Hold:
        updated = replace(hold, state=state, reason=reason or hold.reason)
        self._holds[hold.id] = updated
        return updated

    def _forget(self) -> None:
        ended = [i for i, h in self._holds.items() if h.state not in LIVE]
        for ident in ended[: max(0, len(ended) - self.history)]:
            del self._holds[ident]
