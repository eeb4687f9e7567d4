"""Access control of one key manager: which SAE may get keys toward which SAE, how large, how fast.

Policy file (YAML), one entry per SAE; an SAE not listed is refused:

    saes:
      app1:
        peers: [app2, app3]        # or "*": every SAE listed in this file
        max_key_size: 512          # bits, optional
        max_keys_per_second: 200   # token bucket, optional
        burst: 400                 # bucket size in keys, optional (default: 2 s of rate, >= 1)
        key_mode: hybrid-either    # optional, default qkd-preferred; or per slave SAE:
                                   # {app2: pqc-only, "*": qkd-only} (docs/pqc.md)

A permission is directional: `app1: {peers: [app2]}` lets app1 get keys toward app2 (enc_keys
with app2 as slave) and fetch keys that app2 made for it (dec_keys with app2 as master).

ETSI GS QKD 014 allows only 400, 401 and 503. Refusals map to them as:
unknown SAE or missing permission → 401 (unauthorized); key larger than allowed → 400 (a
request the client must change); rate exceeded → 503 with Retry-After (a temporary refusal:
the same request succeeds later, which 400 would deny and 429 is not in the standard).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from km.pqc.mode import DEFAULT_MODE, MODE_NAMES, KeyMode

log = logging.getLogger(__name__)

# How often the policy file's mtime is looked at, at most.
RELOAD_CHECK_INTERVAL_S = 1.0


class Refusal(enum.Enum):
    UNKNOWN_SAE = "unknown_sae"
    NOT_PERMITTED = "not_permitted"
    KEY_TOO_LARGE = "key_too_large"
    RATE_EXCEEDED = "rate_exceeded"

    @property
    def status_code(self) -> int:
        return {Refusal.KEY_TOO_LARGE: 400, Refusal.RATE_EXCEEDED: 503}.get(self, 401)


class PolicyError(ValueError):
    """An invalid policy; `errors` names every problem (field: why)."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.errors = tuple(errors)


class AccessDenied(Exception):
    def __init__(self, refusal: Refusal, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.status_code = refusal.status_code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SaeRule:
    peers: frozenset[str] | None  # None: every SAE of the policy
    max_key_size_bits: int | None = None
    max_keys_per_second: float | None = None
    burst: float | None = None
    key_modes: Mapping[str, KeyMode] = field(default_factory=dict)  # slave SAE or "*" -> mode

    def mode_toward(self, slave: str) -> KeyMode:
        return self.key_modes.get(slave) or self.key_modes.get("*") or DEFAULT_MODE

    @property
    def bucket_size(self) -> float:
        if self.max_keys_per_second is None:
            return math.inf
        return self.burst if self.burst is not None else max(1.0, 2 * self.max_keys_per_second)


@dataclass(frozen=True)
class AccessPolicy:
    rules: Mapping[str, SaeRule]

    @staticmethod
    def allow_all(sae_ids: Iterable[str]) -> AccessPolicy:
        """The default lab policy: every SAE may get keys toward every other one."""
        return AccessPolicy({sae: SaeRule(peers=None) for sae in sae_ids})

    @staticmethod
    def from_dict(data: Any, source: str = "policy") -> AccessPolicy:
        errors: list[str] = []
        if not isinstance(data, dict) or not isinstance(data.get("saes"), dict):
            raise PolicyError(source, ["top level must be a mapping with a 'saes' mapping"])
        unknown_top = set(data) - {"saes"}
        if unknown_top:
            errors.append(f"unknown top-level field(s): {', '.join(sorted(unknown_top))}")
        rules: dict[str, SaeRule] = {}
        for sae, entry in data["saes"].items():
            rule = _parse_rule(str(sae), entry, errors)
            if rule is not None:
                rules[str(sae)] = rule
        for sae, rule in rules.items():
            for peer in sorted(rule.peers or ()):
                if peer not in rules:
                    errors.append(f"saes.{sae}.peers: {peer!r} is not an SAE of this policy")
        if errors:
            raise PolicyError(source, errors)
        return AccessPolicy(rules)

    @staticmethod
    def load(path: Path) -> AccessPolicy:
        try:
            text = path.read_text()
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(str(path), [f"not valid YAML: {exc}"]) from None
        try:
            return AccessPolicy.from_dict(data, str(path))
        except PolicyError as exc:
            raise PolicyError(str(path), _with_lines(text, exc.errors)) from None

    def mode_for(self, master: str, slave: str) -> KeyMode:
        """The key mode of (master → slave) keys; the default when the master has no rule."""
        rule = self.rules.get(master)
        return DEFAULT_MODE if rule is None else rule.mode_toward(slave)

    def decide(self, requester: str, peers: Sequence[str], size_bits: int) -> AccessDenied | None:
        """Identity, permission and size (not rate): None when allowed."""
        rule = self.rules.get(requester)
        if rule is None:
            return AccessDenied(Refusal.UNKNOWN_SAE, f"SAE {requester!r} is not in the policy")
        for peer in peers:
            allowed = peer in self.rules if rule.peers is None else peer in rule.peers
            if not allowed or peer == requester:
                return AccessDenied(
                    Refusal.NOT_PERMITTED, f"SAE {requester!r} may not get keys with {peer!r}"
                )
        if rule.max_key_size_bits is not None and size_bits > rule.max_key_size_bits:
            return AccessDenied(
                Refusal.KEY_TOO_LARGE,
                f"key size {size_bits} exceeds {rule.max_key_size_bits} bits allowed for "
                f"SAE {requester!r}",
            )
        return None


@dataclass
class TokenBucket:
    """Keys per second with a burst; pure given `now`."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, amount: float, now: float) -> float:
        """Takes `amount` tokens and returns 0.0, or returns the seconds to wait (takes none)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if amount <= self.tokens:
            self.tokens -= amount
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.tokens) / self.rate


@dataclass
class AccessControl:
    """The policy in force, its rate buckets and refusal counters; reloads from its file."""

    policy: AccessPolicy
    source: Path | None = None
    clock: Callable[[], float] = time.monotonic
    counters: Counter[str] = field(default_factory=Counter)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _mtime: float | None = None
    _checked_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Told of every reload attempt: (trigger, replaced, detail); the KM's audit log listens.
    on_reload: Callable[[str, bool, str], None] | None = None
    # Called after a policy was replaced (km/pqc writes changed key modes into the tree).
    replaced_listeners: list[Callable[[], None]] = field(default_factory=list)

    @staticmethod
    def from_file(path: Path, clock: Callable[[], float] = time.monotonic) -> AccessControl:
        control = AccessControl(AccessPolicy.load(path), source=path, clock=clock)
        control._mtime = path.stat().st_mtime
        return control

    def reload(self, trigger: str = "SIGHUP") -> bool:
        """Reads the policy file again; on error keeps the policy in force. True if replaced."""
        if self.source is None:
            return False
        try:
            mtime = self.source.stat().st_mtime
            policy = AccessPolicy.load(self.source)
        except (OSError, PolicyError) as exc:
            self.counters["policy_reload_errors"] += 1
            log.error("access policy not reloaded, keeping the previous one: %s", exc)
            if self.on_reload is not None:
                self.on_reload(trigger, False, str(exc))
            return False
        with self._lock:
            self.policy = policy
            self._mtime = mtime
            self._buckets.clear()
        self.counters["policy_reloads"] += 1
        log.info("access policy reloaded from %s (%d SAEs)", self.source, len(policy.rules))
        if self.on_reload is not None:
            self.on_reload(trigger, True, f"{len(policy.rules)} SAEs")
        for listener in self.replaced_listeners:
            listener()
        return True

    def maybe_reload(self) -> None:
        """Reloads when the file's mtime changed (looked at once a second at most)."""
        now = self.clock()
        if self.source is None or now - self._checked_at < RELOAD_CHECK_INTERVAL_S:
            return
        self._checked_at = now
        try:
            mtime = self.source.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self.reload("file change")

    def check(self, requester: str, peers: Sequence[str], number: int, size_bits: int) -> None:
        """Raises AccessDenied (and counts it) unless `requester` may get `number` keys now."""
        self.maybe_reload()
        with self._lock:
            denied = self.policy.decide(requester, peers, size_bits)
            if denied is None:
                denied = self._take_rate(requester, number)
        if denied is not None:
            self.counters[f"refused_{denied.refusal.value}"] += 1
            raise denied
        self.counters["allowed_requests"] += 1

    def _take_rate(self, requester: str, number: int) -> AccessDenied | None:
        rule = self.policy.rules[requester]
        if rule.max_keys_per_second is None:
            return None
        now = self.clock()
        bucket = self._buckets.get(requester)
        if bucket is None:
            capacity = rule.bucket_size
            bucket = TokenBucket(rule.max_keys_per_second, capacity, capacity, now)
            self._buckets[requester] = bucket
        wait = bucket.take(number, now)
        if wait == 0.0:
            return None
        return AccessDenied(
            Refusal.RATE_EXCEEDED,
            f"rate limit of {rule.max_keys_per_second:g} keys/s for SAE {requester!r} exceeded",
            retry_after_s=wait,
        )

    def snapshot(self) -> dict[str, int]:
        return dict(self.counters)


def _parse_rule(sae: str, entry: Any, errors: list[str]) -> SaeRule | None:
    where = f"saes.{sae}"
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        errors.append(f"{where}: must be a mapping")
        return None
    unknown = set(entry) - {"peers", "max_key_size", "max_keys_per_second", "burst", "key_mode"}
    if unknown:
        errors.append(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    peers_raw = entry.get("peers", "*")
    peers: frozenset[str] | None = None
    if peers_raw != "*":
        if not isinstance(peers_raw, list) or not all(isinstance(p, str) for p in peers_raw):
            errors.append(f"{where}.peers: must be '*' or a list of SAE IDs")
        else:
            peers = frozenset(peers_raw)
    size = _positive(entry.get("max_key_size"), f"{where}.max_key_size", errors, integer=True)
    if size is not None and size % 8:
        errors.append(f"{where}.max_key_size: must be a multiple of 8")
    rate = _positive(entry.get("max_keys_per_second"), f"{where}.max_keys_per_second", errors)
    burst = _positive(entry.get("burst"), f"{where}.burst", errors)
    if burst is not None and rate is None:
        errors.append(f"{where}.burst: needs max_keys_per_second")
    return SaeRule(
        peers=peers,
        max_key_size_bits=None if size is None else int(size),
        max_keys_per_second=rate,
        burst=burst,
        key_modes=_key_modes(entry.get("key_mode"), f"{where}.key_mode", errors),
    )


def _key_modes(value: Any, where: str, errors: list[str]) -> dict[str, KeyMode]:
    """`key_mode`: one mode for every slave, or a mapping of slave SAE (or "*") to a mode."""
    if value is None:
        return {}
    items = value.items() if isinstance(value, dict) else [("*", value)]
    modes: dict[str, KeyMode] = {}
    for slave, text in items:
        at = where if not isinstance(value, dict) else f"{where}.{slave}"
        try:
            modes[str(slave)] = KeyMode.parse(text if isinstance(text, str) else repr(text))
        except ValueError:
            errors.append(f"{at}: unknown key mode {text!r} (known: {', '.join(MODE_NAMES)})")
    return modes


def _with_lines(text: str, errors: Sequence[str]) -> list[str]:
    """Prefixes each error "a.b.c: why" with the line of a.b.c in the YAML text."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return list(errors)
    out = []
    for error in errors:
        node = root
        field_path = error.split(":", 1)[0]
        line: int | None = None
        for part in field_path.split("."):
            if not isinstance(node, yaml.MappingNode):
                break
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                break
            node, line = found, found.start_mark.line + 1
        out.append(error if line is None else f"line {line}: {error}")
    return out


def _positive(value: Any, where: str, errors: list[str], integer: bool = False) -> float | None:
    if value is None:
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        errors.append(f"{where}: must be {kind}, got {value!r}")
        return None
    return float(value)
