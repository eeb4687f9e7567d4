"""The controller's own configuration file (controller.yaml): API, managed nodes, policies.

`load(path)` validates every field and raises one `ConfigError` naming each bad one; see
docs/configuration.md for an example.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import Address, ConfigError, Reader, TlsFiles, is_uuid
from common.ids import node_uuid
from controller.buffers import BufferSettings
from controller.steering import SteeringSettings

__all__ = [
    "ConfigError",
    "ControllerConfig",
    "DomainConfig",
    "ManagedNode",
    "PeerDomain",
    "load",
]

FIELDS = (
    "listen",
    "nodes",
    "netconf",
    "tls",
    "api_token_file",
    "policy",
    "forced_paths",
    "allow_preemption",
    "relay",
    "poll_interval_s",
    "api_tokens",
    "audit_log",
    "steering",
    "buffers",
    "domain",
)
BUFFER_FIELDS = ("mode", "interval_s", "min", "max", "horizon_s", "key_bits", "hold_s")
BUFFER_MODES = ("fixed", "adaptive")
API_ROLES = ("viewer", "operator", "admin")
STEERING_FIELDS = (
    "mode",
    "interval_s",
    "hold_s",
    "drop_ratio",
    "recover_ratio",
    "drain_ratio",
    "drain_clear_ratio",
    "drain_after_s",
    "priorities",
)
STEERING_MODES = ("static", "data-driven")
POLICIES = ("fewest-hops", "key-aware")
DOMAIN_FIELDS = (
    "name",
    "borders",
    "saes",
    "peers",
    "reservation_ttl_s",
    "peer_timeout_s",
    "view_interval_s",
    "partners",
)
PEER_FIELDS = (
    "name",
    "url",
    "token_file",
    "accept_token_file",
    "allow_saes",
    "rate_cap_bps",
    "key_modes",
)
KEY_MODES = ("qkd-only", "qkd-preferred", "pqc-only", "hybrid-strict", "hybrid-either")
RELAY_MODES = ("aes-gcm", "otp")


@dataclass(frozen=True)
class ManagedNode:
    name: str
    qkdn_id: str
    netconf: Address


@dataclass(frozen=True)
class NetconfClientFiles:
    username: str
    password_file: Path | None
    client_key: Path | None  # SSH private key the agents accept
    known_host_key: Path | None  # the agents' SSH host public key, pinned (None: not pinned)


@dataclass(frozen=True)
class RelayDefaults:
    """The `qkdsdn:relay` augment the controller writes into every installed app."""

    mode: str = "aes-gcm"
    e2e_buffer: int = 3


@dataclass(frozen=True)
class SteeringConfig:
    """`steering`: static (react to link down only, as before) or data-driven (controller/
    steering.py moves associations off degraded or draining links, by priority)."""

    mode: str = "static"
    interval_s: float = 1.0  # how often the data-driven steering looks at the network
    settings: SteeringSettings = field(default_factory=SteeringSettings)

    @property
    def data_driven(self) -> bool:
        return self.mode == "data-driven"


@dataclass(frozen=True)
class BufferConfig:
    """`buffers`: fixed (every association keeps `relay.e2e_buffer` keys ready) or adaptive
    (controller/buffers.py sizes each association's relay/buffer from its consumption)."""

    mode: str = "fixed"
    interval_s: float = 1.0  # how often the adaptive sizing looks at the measured rates
    settings: BufferSettings = field(default_factory=BufferSettings)

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"


@dataclass(frozen=True)
class PeerDomain:
    """`domain.peers[]`: a peer domain's controller and what this domain allows it."""

    name: str
    url: str  # the peer controller's API, e.g. http://controller-b.example:8600
    token_file: Path  # what we send to the peer (its `peer` token for us)
    accept_token_file: Path  # what the peer must send us
    allow_saes: tuple[str, ...] = ("*",)  # globs of our SAEs the peer may reach
    rate_cap_bps: int = 1_000_000  # the most key rate its live reservations may hold here
    key_modes: tuple[str, ...] = ("qkd-only", "qkd-preferred")


@dataclass(frozen=True)
class DomainConfig:
    """`domain`: this controller's domain among several (docs/cross-domain.md)."""

    name: str
    borders: Mapping[str, str] = field(default_factory=dict)  # border node -> peer domain
    saes: Mapping[str, str] = field(default_factory=dict)  # own SAE -> the node serving it
    peers: tuple[PeerDomain, ...] = ()
    reservation_ttl_s: float = 10.0
    peer_timeout_s: float = 3.0
    view_interval_s: float = 2.0  # how often the peers' abstract views are fetched
    # border node -> the peer domain's node at the same border site (several borders toward
    # one domain: which of its borders each one meets); empty: not said
    partners: Mapping[str, str] = field(default_factory=dict)

    def peer(self, name: str) -> PeerDomain | None:
        return next((p for p in self.peers if p.name == name), None)


@dataclass(frozen=True)
class ControllerConfig:
    file: Path
    api: Address
    nodes: tuple[ManagedNode, ...]
    netconf: NetconfClientFiles
    tls: TlsFiles | None  # the controller's client identity towards KMs (not used yet)
    api_token_file: Path | None  # bearer token of state-changing API calls (None: no token)
    policy: str
    forced_paths: Mapping[str, tuple[str, ...]]  # "app1>app2" -> node names
    allow_preemption: bool
    relay: RelayDefaults
    poll_interval_s: float
    # One bearer token file per API role (controller/api_token.py); empty: api_token_file
    # alone, accepted as admin. api_token_file stays the CLI's default credential.
    api_tokens: Mapping[str, Path] = field(default_factory=dict)
    audit_log: Path | None = None  # append-only audit of API changes (None: not recorded)
    metrics: Address | None = None  # Prometheus /metrics (None: not served)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    domain: DomainConfig | None = None  # None: a single-domain controller

    @property
    def api_url(self) -> str:
        return self.api.url("http")


def load(path: Path, env: Mapping[str, str] | None = None) -> ControllerConfig:
    """The controller configuration in `path` (QKDSDN_* variables of `env` override fields)."""
    path = Path(path).resolve()
    data = Reader.load_yaml(path, FIELDS, os.environ if env is None else env)
    return parse(data, path)


def load_api_address(path: Path, env: Mapping[str, str] | None = None) -> Address:
    """Only `listen.api` of the file (what a CLI client needs; the rest is not checked)."""
    path = Path(path).resolve()
    data = Reader.load_yaml(path, FIELDS, os.environ if env is None else env)
    r = Reader(path)
    listen = r.mapping(r.required(data, "listen", ""), "listen", ("api", "metrics"))
    address = r.address(listen, "api", "listen")
    r.done()
    return address


def parse(data: dict[str, Any], path: Path) -> ControllerConfig:
    r = Reader(path)
    top = r.mapping(data, "", FIELDS)
    listen = r.mapping(r.required(top, "listen", ""), "listen", ("api", "metrics"))
    nc = r.mapping(
        r.required(top, "netconf", ""),
        "netconf",
        ("username", "password_file", "client_key", "known_host_key"),
    )
    relay = r.mapping(top.get("relay"), "relay", ("mode", "e2e_buffer"))
    nodes = tuple(_node(r, where, item) for where, item in r.items(top, "nodes", ""))
    config = ControllerConfig(
        file=path,
        api=r.address(listen, "api", "listen"),
        nodes=nodes,
        netconf=NetconfClientFiles(
            r.text(nc, "username", "netconf"),
            r.optional_file(nc, "password_file", "netconf"),
            r.optional_file(nc, "client_key", "netconf"),
            r.optional_file(nc, "known_host_key", "netconf"),
        ),
        tls=r.tls(top, "tls", ""),
        api_token_file=r.optional_file(top, "api_token_file", ""),
        policy=r.choice(top, "policy", "", POLICIES, "fewest-hops"),
        forced_paths=_forced_paths(r, top.get("forced_paths"), {n.name for n in nodes}),
        allow_preemption=r.boolean(top, "allow_preemption", "", False),
        relay=RelayDefaults(
            r.choice(relay, "mode", "relay", RELAY_MODES, "aes-gcm"),
            r.integer(relay, "e2e_buffer", "relay", 3, minimum=0),
        ),
        poll_interval_s=r.number(top, "poll_interval_s", "", 5.0),
        api_tokens=_api_tokens(r, top.get("api_tokens")),
        audit_log=r.path(top, "audit_log", "") if top.get("audit_log") is not None else None,
        metrics=r.optional_address(listen, "metrics", "listen"),
        steering=_steering(r, top.get("steering")),
        buffers=_buffers(r, top.get("buffers")),
        domain=_domain(r, top.get("domain"), {n.name for n in nodes}),
    )
    if config.netconf.password_file is None and config.netconf.client_key is None:
        r.error("netconf", "give password_file or client_key (or both)")
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        if node.name in seen:
            r.error(f"nodes[{index}].name", f"{node.name} appears twice")
        seen.add(node.name)
    r.done()
    return config


def _api_tokens(r: Reader, data: Any) -> dict[str, Path]:
    tokens = r.mapping(data, "api_tokens", API_ROLES)
    found: dict[str, Path] = {}
    for role in API_ROLES:
        path = r.optional_file(tokens, role, "api_tokens")
        if path is not None:
            found[role] = path
    if len(set(found.values())) != len(found):
        r.error("api_tokens", "each role needs its own token file")
    return found


def _node(r: Reader, where: str, item: Any) -> ManagedNode:
    data = r.mapping(item, where, ("name", "qkdn_id", "netconf"))
    name = r.text(data, "name", where)
    qkdn_id = r.text(data, "qkdn_id", where, default=node_uuid(name) if name else "-")
    if data.get("qkdn_id") is not None and not is_uuid(qkdn_id):
        r.error(f"{where}.qkdn_id", f"{qkdn_id!r} is not a lower-case UUID")
    return ManagedNode(name, qkdn_id, r.address(data, "netconf", where))


def _forced_paths(r: Reader, data: Any, names: set[str]) -> dict[str, tuple[str, ...]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        r.error("forced_paths", "must be a mapping of 'app1>app2' to a list of nodes")
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for pair, path in data.items():
        where = f"forced_paths.{pair}"
        if not isinstance(pair, str) or pair.count(">") != 1:
            r.error(where, "the key must be 'MASTER_SAE>SLAVE_SAE'")
        elif (
            not isinstance(path, list) or len(path) < 2 or not all(isinstance(n, str) for n in path)
        ):
            r.error(where, "must be a list of at least two node names")
        elif unknown := [n for n in path if n not in names]:
            r.error(where, f"unknown node(s) {', '.join(unknown)}")
        else:
            found[pair] = tuple(path)
    return found


def _steering(r: Reader, data: Any) -> SteeringConfig:
    top = r.mapping(data, "steering", STEERING_FIELDS)
    defaults = SteeringSettings()
    priorities: dict[str, int] = {}
    raw = top.get("priorities") or {}
    if not isinstance(raw, dict):
        r.error("steering.priorities", "must be a mapping of SAE name to priority")
        raw = {}
    for sae, value in raw.items():
        if not isinstance(sae, str) or isinstance(value, bool) or not isinstance(value, int):
            r.error(f"steering.priorities.{sae}", f"must be an integer priority, not {value!r}")
        elif not 0 <= value <= 0xFFFFFFFF:
            r.error(f"steering.priorities.{sae}", f"must be a uint32, not {value}")
        else:
            priorities[sae] = value
    ratios = {
        name: r.number(top, name, "steering", getattr(defaults, name))
        for name in ("drop_ratio", "recover_ratio", "drain_ratio", "drain_clear_ratio")
    }
    try:
        settings = SteeringSettings(
            hold_s=r.number(top, "hold_s", "steering", defaults.hold_s, positive=False),
            drain_after_s=r.number(
                top, "drain_after_s", "steering", defaults.drain_after_s, positive=False
            ),
            priorities=priorities,
            **ratios,
        )
    except ValueError as error:
        r.error("steering", str(error).removeprefix("steering: "))
        settings = defaults
    return SteeringConfig(
        r.choice(top, "mode", "steering", STEERING_MODES, "static"),
        r.number(top, "interval_s", "steering", 1.0),
        settings,
    )


def _buffers(r: Reader, data: Any) -> BufferConfig:
    top = r.mapping(data, "buffers", BUFFER_FIELDS)
    defaults = BufferSettings()
    try:
        settings = BufferSettings(
            minimum=r.integer(top, "min", "buffers", defaults.minimum, minimum=0),
            maximum=r.integer(top, "max", "buffers", defaults.maximum, minimum=0),
            horizon_s=r.number(top, "horizon_s", "buffers", defaults.horizon_s),
            key_bits=r.integer(top, "key_bits", "buffers", defaults.key_bits),
            hold_s=r.number(top, "hold_s", "buffers", defaults.hold_s, positive=False),
        )
    except ValueError as error:
        r.error("buffers", str(error).removeprefix("buffers: "))
        settings = defaults
    return BufferConfig(
        r.choice(top, "mode", "buffers", BUFFER_MODES, "fixed"),
        r.number(top, "interval_s", "buffers", 1.0),
        settings,
    )


def _domain(r: Reader, data: Any, names: set[str]) -> DomainConfig | None:
    if data is None:
        return None
    top = r.mapping(data, "domain", DOMAIN_FIELDS)
    name = r.text(top, "name", "domain")
    borders = r.names(top, "borders", "domain", lambda peer: peer != name)
    for node in borders:
        if node not in names:
            r.error(f"domain.borders.{node}", "not one of the managed nodes")
    saes = r.names(top, "saes", "domain", lambda node: node in names)
    peers = tuple(_peer(r, where, item, name) for where, item in r.items(top, "peers", "domain"))
    seen: set[str] = set()
    for index, peer in enumerate(peers):
        if peer.name in seen:
            r.error(f"domain.peers[{index}].name", f"{peer.name} appears twice")
        seen.add(peer.name)
    for node, peer_name in borders.items():
        if peer_name not in seen:
            r.error(f"domain.borders.{node}", f"peer domain {peer_name} is not in domain.peers")
    partners = r.names(top, "partners", "domain", lambda node: node not in names)
    for node in partners:
        if node not in borders:
            r.error(f"domain.partners.{node}", "not one of domain.borders")
    return DomainConfig(
        name,
        borders,
        saes,
        peers,
        r.number(top, "reservation_ttl_s", "domain", 10.0),
        r.number(top, "peer_timeout_s", "domain", 3.0),
        r.number(top, "view_interval_s", "domain", 2.0),
        partners,
    )


def _peer(r: Reader, where: str, item: Any, own: str) -> PeerDomain:
    data = r.mapping(item, where, PEER_FIELDS)
    name = r.text(data, "name", where)
    if name == own:
        r.error(f"{where}.name", f"{name} is this domain itself")
    url = r.text(data, "url", where)
    if url and not url.startswith(("http://", "https://")):
        r.error(f"{where}.url", f"{url!r} is not an http(s) URL")
    allow = _strings(r, data, "allow_saes", where, ("*",))
    modes = _strings(r, data, "key_modes", where, ("qkd-only", "qkd-preferred"))
    for mode in modes:
        if mode not in KEY_MODES:
            r.error(f"{where}.key_modes", f"{mode!r} is not one of {', '.join(KEY_MODES)}")
    return PeerDomain(
        name,
        url.rstrip("/"),
        r.file(data, "token_file", where),
        r.file(data, "accept_token_file", where),
        allow,
        r.integer(data, "rate_cap_bps", where, 1_000_000, minimum=0),
        modes,
    )


def _strings(
    r: Reader, data: Mapping[str, Any], key: str, where: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        r.error(f"{where}.{key}", "must be a list of non-empty strings")
        return default
    return tuple(value)
