"""An agent's own configuration file (agent.yaml): one node, its listeners and its links.

`load(path)` validates every field and raises one `ConfigError` naming each bad one; see
docs/configuration.md for an example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.access.cert_names import CertNameError, CertRule, parse_fingerprint
from agents.access.nacm import ADMIN, GROUPS
from agents.access.users import PasswordHashError, check_hash
from agents.emulator.physics import PRESETS
from common.config import Address, ConfigError, Reader, TlsFiles, is_uuid
from common.ids import link_uuid, node_uuid

__all__ = ["AgentConfig", "ConfigError", "load"]

FIELDS = (
    "node",
    "qkdn_id",
    "location",
    "listen",
    "netconf",
    "tls",
    "data_dir",
    "durable",
    "perf_interval_s",
    "key_manager",
    "links",
    "module",
)
ROLES = ("transmitter", "receiver")


@dataclass(frozen=True)
class AgentListen:
    netconf: Address
    grpc: Address  # KeyDelivery (ETSI 004 module side), NodeLink and AgentControl
    restconf: Address | None = None  # RESTCONF (RFC 8040) over HTTPS; None: not served


@dataclass(frozen=True)
class NetconfUser:
    """An account of the NETCONF/RESTCONF faces: its NACM group, a password hash
    (`scrypt$n$r$p$salt$hash`, see agents.access.users) and/or public keys."""

    name: str
    group: str  # one of agents.access.nacm.GROUPS
    password_hash: str | None
    authorized_keys_file: Path | None


@dataclass(frozen=True)
class NetconfServerFiles:
    username: str
    password_file: Path
    authorized_keys_file: Path  # OpenSSH public keys of the clients allowed in
    host_key: Path  # the agent's SSH host key (private)
    group: str = ADMIN  # the NACM group of `username` (the controller's own: "controller")
    users: tuple[NetconfUser, ...] = ()  # more accounts, each with its own group
    # RESTCONF client certificate → account (RFC 7589 cert-to-name), first match wins
    cert_to_name: tuple[CertRule, ...] = ()


@dataclass(frozen=True)
class KeyManagerRef:
    """Where the node's key manager listens, published in its 015 tree."""

    etsi014_url: str
    etsi004: str | None
    relay: str | None


@dataclass(frozen=True)
class PeerEnd:
    node: str
    qkdn_id: str
    qkdi_id: int


@dataclass(frozen=True)
class AgentLink:
    """A PHYS QKD link ending at this node: the local module and the fibre to the peer."""

    qkdl_id: str
    local_qkdi_id: int
    peer: PeerEnd
    role: str  # "transmitter" or "receiver" (phys_qkd_role)
    length_km: float
    extra_loss_db: float
    preset: str  # a key of agents.emulator.physics.PRESETS
    skr_bps: float | None  # explicit rate: overrides the physical model
    qber: float | None
    seed_file: Path  # 32 bytes shared with the peer's module


@dataclass(frozen=True)
class ModuleSettings:
    """The emulated modules: key chunk size and the KM pool size their store is sized for."""

    key_size_bits: int = 256
    link_pool_max_bits: int = 1_000_000


@dataclass(frozen=True)
class AgentConfig:
    file: Path
    node: str
    qkdn_id: str
    location: str
    listen: AgentListen
    netconf: NetconfServerFiles
    tls: TlsFiles | None  # gRPC server identity + CA of allowed clients (None: plaintext)
    data_dir: Path
    durable: bool
    perf_interval_s: float
    key_manager: KeyManagerRef
    links: tuple[AgentLink, ...]
    module: ModuleSettings
    metrics: Address | None = None  # Prometheus /metrics (None: not served)

    @property
    def running_file(self) -> Path:
        return self.data_dir / "running.xml"

    def link(self, qkdl_id: str) -> AgentLink:
        for link in self.links:
            if link.qkdl_id == qkdl_id:
                return link
        raise KeyError(f"node {self.node} has no PHYS link {qkdl_id}")


def load(path: Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    """The agent configuration in `path` (QKDSDN_* variables of `env` override fields)."""
    import os

    path = Path(path).resolve()
    data = Reader.load_yaml(path, FIELDS, os.environ if env is None else env)
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> AgentConfig:
    """An AgentConfig from the file's data (`path` names the file and anchors relative paths)."""
    r = Reader(path)
    top = r.mapping(data, "", FIELDS)
    node = r.text(top, "node", "")
    qkdn_id = r.text(top, "qkdn_id", "", default=node_uuid(node) if node else "-")
    if top.get("qkdn_id") is not None and not is_uuid(qkdn_id):
        r.error("qkdn_id", f"{qkdn_id!r} is not a lower-case UUID")
    listen_data = r.mapping(
        r.required(top, "listen", ""), "listen", ("netconf", "grpc", "restconf", "metrics")
    )
    nc = r.mapping(
        r.required(top, "netconf", ""),
        "netconf",
        (
            "username",
            "password_file",
            "authorized_keys_file",
            "host_key",
            "group",
            "users",
            "cert_to_name",
        ),
    )
    km = r.mapping(
        r.required(top, "key_manager", ""), "key_manager", ("etsi014_url", "etsi004", "relay")
    )
    etsi014_url = r.text(km, "etsi014_url", "key_manager")
    if etsi014_url and not etsi014_url.startswith(("https://", "http://")):
        r.error("key_manager.etsi014_url", f"{etsi014_url!r} is not an http(s) URL")
    etsi004 = r.optional_address(km, "etsi004", "key_manager")
    relay = r.optional_address(km, "relay", "key_manager")
    module = r.mapping(top.get("module"), "module", ("key_size_bits", "link_pool_max_bits"))
    config = AgentConfig(
        file=path,
        node=node,
        qkdn_id=qkdn_id,
        location=str(top.get("location") or ""),
        listen=AgentListen(
            r.address(listen_data, "netconf", "listen"),
            r.address(listen_data, "grpc", "listen"),
            r.optional_address(listen_data, "restconf", "listen"),
        ),
        netconf=NetconfServerFiles(
            r.text(nc, "username", "netconf"),
            r.file(nc, "password_file", "netconf"),
            r.file(nc, "authorized_keys_file", "netconf"),
            r.file(nc, "host_key", "netconf"),
            r.choice(nc, "group", "netconf", GROUPS, ADMIN),
            tuple(_user(r, where, item) for where, item in r.items(nc, "users", "netconf")),
            tuple(
                rule
                for where, item in r.items(nc, "cert_to_name", "netconf")
                if (rule := _cert_rule(r, where, item)) is not None
            ),
        ),
        tls=r.tls(top, "tls", ""),
        data_dir=r.path(top, "data_dir", ""),
        durable=r.boolean(top, "durable", "", True),
        perf_interval_s=r.number(top, "perf_interval_s", "", 10.0),
        key_manager=KeyManagerRef(
            etsi014_url,
            None if etsi004 is None else str(etsi004),
            None if relay is None else str(relay),
        ),
        links=tuple(_link(r, node, where, item) for where, item in r.items(top, "links", "")),
        module=ModuleSettings(
            r.integer(module, "key_size_bits", "module", 256, minimum=8),
            r.integer(module, "link_pool_max_bits", "module", 1_000_000),
        ),
        metrics=r.optional_address(listen_data, "metrics", "listen"),
    )
    _check_unique(r, config)
    r.done()
    return config


def _user(r: Reader, where: str, item: Any) -> NetconfUser:
    user = r.mapping(item, where, ("name", "group", "password_hash", "authorized_keys_file"))
    password_hash = r.optional_text(user, "password_hash", where)
    if password_hash is not None:
        try:
            check_hash(password_hash)
        except PasswordHashError as error:
            r.error(f"{where}.password_hash", str(error))
    keys = r.optional_file(user, "authorized_keys_file", where)
    if password_hash is None and keys is None and isinstance(item, dict):
        r.error(where, "a user needs a password_hash, an authorized_keys_file or both")
    return NetconfUser(
        r.text(user, "name", where),
        r.choice(user, "group", where, GROUPS, "monitor"),
        password_hash,
        keys,
    )


def _cert_rule(r: Reader, where: str, item: Any) -> CertRule | None:
    rule = r.mapping(item, where, ("user", "fingerprint", "san", "cn"))
    user = r.text(rule, "user", where)
    fingerprint: bytes | None = None
    text = r.optional_text(rule, "fingerprint", where)
    if text is not None:
        try:
            fingerprint = parse_fingerprint(text)
        except CertNameError as error:
            r.error(f"{where}.fingerprint", str(error))
            return None
    try:
        return CertRule(
            user,
            fingerprint,
            r.optional_text(rule, "san", where),
            r.optional_text(rule, "cn", where),
        )
    except CertNameError as error:
        r.error(where, str(error))
        return None


def _link(r: Reader, node: str, where: str, item: Any) -> AgentLink:
    link = r.mapping(
        item,
        where,
        (
            "qkdl_id",
            "local_qkdi_id",
            "peer",
            "role",
            "length_km",
            "extra_loss_db",
            "preset",
            "skr_bps",
            "qber",
            "seed_file",
        ),
    )
    peer_data = r.mapping(
        r.required(link, "peer", where), f"{where}.peer", ("node", "qkdn_id", "qkdi_id")
    )
    peer_node = r.text(peer_data, "node", f"{where}.peer")
    peer = PeerEnd(
        peer_node,
        r.text(peer_data, "qkdn_id", f"{where}.peer", default=node_uuid(peer_node)),
        r.integer(peer_data, "qkdi_id", f"{where}.peer"),
    )
    if peer_data.get("qkdn_id") is not None and not is_uuid(peer.qkdn_id):
        r.error(f"{where}.peer.qkdn_id", f"{peer.qkdn_id!r} is not a lower-case UUID")
    if peer_node and peer_node == node:
        r.error(f"{where}.peer.node", "a link joins two different nodes")
    qkdl_id = r.text(link, "qkdl_id", where, default=link_uuid(node, peer_node))
    if link.get("qkdl_id") is not None and not is_uuid(qkdl_id):
        r.error(f"{where}.qkdl_id", f"{qkdl_id!r} is not a lower-case UUID")
    default_role = "transmitter" if node < peer_node else "receiver"
    preset = r.choice(link, "preset", where, sorted(PRESETS), "commercial")
    qber = r.optional_number(link, "qber", where)
    if qber is not None and not qber < 0.5:
        r.error(f"{where}.qber", f"must be below 0.5, not {qber}")
    return AgentLink(
        qkdl_id=qkdl_id,
        local_qkdi_id=r.integer(link, "local_qkdi_id", where),
        peer=peer,
        role=r.choice(link, "role", where, ROLES, default_role),
        length_km=r.number(link, "length_km", where, positive=False),
        extra_loss_db=r.number(link, "extra_loss_db", where, 0.0, positive=False),
        preset=preset,
        skr_bps=r.optional_number(link, "skr_bps", where),
        qber=qber,
        seed_file=r.file(link, "seed_file", where),
    )


def _check_unique(r: Reader, config: AgentConfig) -> None:
    names = [config.netconf.username]
    for index, user in enumerate(config.netconf.users):
        if user.name in names:
            r.error(f"netconf.users[{index}].name", f"user {user.name!r} appears twice")
        names.append(user.name)
    for index, rule in enumerate(config.netconf.cert_to_name):
        if rule.user not in names:
            r.error(
                f"netconf.cert_to_name[{index}].user",
                f"{rule.user!r} is not an account (netconf.username or netconf.users)",
            )
    seen_links: set[str] = set()
    seen_qkdi: set[int] = set()
    for index, link in enumerate(config.links):
        if link.qkdl_id in seen_links:
            r.error(f"links[{index}].qkdl_id", f"{link.qkdl_id} appears twice")
        if link.local_qkdi_id in seen_qkdi:
            r.error(
                f"links[{index}].local_qkdi_id", f"interface {link.local_qkdi_id} is used twice"
            )
        seen_links.add(link.qkdl_id)
        seen_qkdi.add(link.local_qkdi_id)
