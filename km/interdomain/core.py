"""The pure part of ETSI 020 hand-offs: wire body -> checked keys, digests, where a target goes."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from km.config import KmInterdomain
from km.interdomain.wire import ExtKey, ExtKeys
from km.key_store import StoredKey, key_id_value

MAX_KEYS_PER_HAND_OFF = 1024


class WireError(ValueError):
    """A hand-off body that cannot be accepted; `field` names where, `why` says why."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


@dataclass(frozen=True, repr=False)
class HandOff:
    """Keys handed from one KMS to another: same master, targets and size. No value in repr."""

    keys: tuple[StoredKey, ...]
    master: str
    targets: tuple[str, ...]
    callback: str

    def __repr__(self) -> str:
        return (
            f"HandOff(key_ids={self.key_ids!r}, master={self.master!r},"
            f" targets={self.targets!r}, values=<hidden>)"
        )

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)

    @property
    def size_bits(self) -> int:
        return self.keys[0].size_bits


def digest(material: bytes) -> str:
    """What the journal keeps to recognise a value (SHA-256, hex); never the value itself."""
    return hashlib.sha256(material).hexdigest()


def same_value(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two key values."""
    return hmac.compare_digest(a, b)


def parse_hand_off(
    body: ExtKeys, *, max_keys: int = MAX_KEYS_PER_HAND_OFF, max_size_bits: int = 8192
) -> HandOff:
    """The checked keys of an ext_keys body; WireError naming the first bad field."""
    if len(body.keys) > max_keys:
        raise WireError("keys", f"{len(body.keys)} keys, at most {max_keys} per hand-off")
    check_url(body.ack_callback_url, "ack_callback_url")
    if len(set(body.target_sae_ids)) != len(body.target_sae_ids):
        raise WireError("target_sae_ids", "an SAE_ID is given twice")
    for index, target in enumerate(body.target_sae_ids):
        if not target:
            raise WireError(f"target_sae_ids[{index}]", "empty SAE_ID")
    expires_at = _expires_at(body)
    keys: list[StoredKey] = []
    seen: set[str] = set()
    for index, key in enumerate(body.keys):
        material = _value(key, f"keys[{index}].value")
        if key_id_value(key.key_id) is None:
            raise WireError(f"keys[{index}].key_id", "not a lower-case UUID")
        if key.key_id in seen:
            raise WireError(f"keys[{index}].key_id", "given twice")
        seen.add(key.key_id)
        if keys and len(material) != len(keys[0].material):
            raise WireError(f"keys[{index}].value", "keys of one hand-off share one size")
        if len(material) * 8 > max_size_bits:
            raise WireError(f"keys[{index}].value", f"longer than {max_size_bits} bits")
        keys.append(
            StoredKey(
                key_id=key.key_id,
                material=material,
                size_bits=len(material) * 8,
                master=body.initiator_sae_id,
                slaves=tuple(body.target_sae_ids),
                expires_at=expires_at,
            )
        )
    return HandOff(
        tuple(keys), body.initiator_sae_id, tuple(body.target_sae_ids), body.ack_callback_url
    )


def check_key_ids(key_ids: Sequence[str], field: str = "key_ids") -> None:
    for index, key_id in enumerate(key_ids):
        if key_id_value(key_id) is None:
            raise WireError(f"{field}[{index}]", "not a lower-case UUID")


def check_url(url: str, field: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise WireError(field, "must be an https:// URL")


def to_wire(keys: Sequence[StoredKey], callback: str) -> dict[str, object]:
    """The ext_keys body handing `keys` (one master, one set of slaves) to a peer."""
    first = keys[0]
    body: dict[str, object] = {
        "keys": [
            {"key_id": k.key_id, "value": base64.b64encode(k.material).decode("ascii")}
            for k in keys
        ],
        "initiator_sae_id": first.master,
        "target_sae_ids": list(first.slaves),
        "ack_callback_url": callback,
    }
    if first.expires_at is not None:
        body["extension_optional"] = [{"expires_at": first.expires_at}]
    return body


def _value(key: ExtKey, field: str) -> bytes:
    try:
        material = base64.b64decode(key.value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(field, "not base64") from None
    if not material:
        raise WireError(field, "empty key")
    return material


def _expires_at(body: ExtKeys) -> float | None:
    for index, entry in enumerate(body.extension_optional or ()):
        if "expires_at" in entry:
            value = entry["expires_at"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise WireError(f"extension_optional[{index}].expires_at", "not a unix time")
            return float(value)
    if body.extension_mandatory:
        raise WireError("extension_mandatory", "no mandatory extension is supported")
    return None


class Route(enum.Enum):
    """Where a receiving border KM sends keys for one target SAE."""

    STORE = "store"  # the SAE is served by this node: keep them for its dec_keys
    RELAY = "relay"  # the SAE is reached through this domain: relay along the association
    HAND_OFF = "hand off"  # this KM is also the border toward the SAE: hand off again


def route_of(
    target: str, node: str, applications: Mapping[str, str], interdomain: KmInterdomain
) -> tuple[Route, str]:
    """(route, node or peer kme_id) for `target`; WireError when this KM cannot reach it."""
    peer = interdomain.peer_for(target)
    if peer is not None:
        return Route.HAND_OFF, peer.kme_id
    where = applications.get(target)
    if where is None:
        raise WireError("target_sae_ids", f"SAE {target!r} is not reached through {node}")
    if where == node:
        return Route.STORE, node
    return Route.RELAY, where
