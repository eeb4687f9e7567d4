"""A key manager's own configuration file (km.yaml): identity, listeners, agent, peers, limits.

`load(path)` validates every field and raises one `ConfigError` naming each bad one; see
docs/configuration.md for an example.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from common.config import Address, ConfigError, Reader, TlsFiles, is_uuid
from common.ids import link_uuid, node_uuid

__all__ = [
    "ConfigError",
    "KmConfig",
    "KmInterdomain",
    "KmInterdomainPeer",
    "KmPeer",
    "KmSettings",
    "load",
]

FIELDS = (
    "node",
    "qkdn_id",
    "listen",
    "agent",
    "peers",
    "tls",
    "data_dir",
    "policy",
    "applications",
    "nodes",
    "settings",
    "key_managers",
    "interdomain",
)
INTERDOMAIN = ("domain", "listen", "trusted_cas", "peers", "ack_timeout_s", "advertise")
INTERDOMAIN_PEER = ("domain", "kme_id", "url", "saes", "ca")
SETTINGS = (
    "key_size_bits",
    "relay_mode",
    "e2e_buffer",
    "link_pool_max_bits",
    "max_key_per_request",
    "max_key_size_bits",
    "min_key_size_bits",
    "pqc_kem",
    "pqc_batch",
    "pqc_rekey_s",
    "admission_wait_s",
)
RELAY_MODES = ("aes-gcm", "otp")
PQC_KEMS = ("ML-KEM-768", "ML-KEM-1024")


@dataclass(frozen=True)
class KmListen:
    etsi014: Address  # HTTPS, mutual TLS, applications
    etsi004: Address  # gRPC, mutual TLS, applications
    relay: Address  # gRPC, mutual TLS, KM to KM
    skip: Address | None = None  # HTTPS, mutual TLS, Cisco SKIP for applications (None: off)


@dataclass(frozen=True)
class KmPeer:
    """A neighbour key manager: the other end of one PHYS link of this node."""

    node: str
    qkdn_id: str
    # Where its relay listens; None: learned from the network (the VIRT links the controller
    # installs on this node name their hops' key managers), see km/relay/client.py.
    relay: Address | None
    qkdl_id: str  # the PHYS link to it (default: common.ids.link_uuid of the two names)


@dataclass(frozen=True)
class KmSettings:
    key_size_bits: int = 256
    relay_mode: str = "aes-gcm"  # or "otp"
    e2e_buffer: int = 3  # end-to-end keys relayed ahead per association
    link_pool_max_bits: int = 1_000_000
    max_key_per_request: int = 128
    max_key_size_bits: int = 1024
    min_key_size_bits: int = 64
    pqc_kem: str = "ML-KEM-768"  # or "ML-KEM-1024": post-quantum exchange between end KMs
    pqc_batch: int = 32  # keys derived per ML-KEM encapsulation
    pqc_rekey_s: float = 120.0  # keys of an older exchange are never handed out
    # A mode with a fallback (qkd-preferred, hybrid-either) waits this long at most for the
    # admission of a new association before serving post-quantum keys (0: never waits).
    admission_wait_s: float = 2.0


@dataclass(frozen=True)
class KmInterdomainPeer:
    """The co-located key manager of another domain at a trusted border site (ETSI 020)."""

    domain: str
    kme_id: str  # its node name: its certificate names urn:qkdsdn:km:<kme_id>
    url: str  # its ETSI 020 base, e.g. https://kms-b.example:8410/kmapi/v1
    saes: tuple[str, ...]  # SAEs reached by handing keys to it
    # The CA of its domain: its certificate must be issued by this CA (None: any trusted CA;
    # the parser always sets it, see `_interdomain`).
    ca: Path | None = None


@dataclass(frozen=True)
class KmInterdomain:
    """A border key manager's ETSI 020 face toward other domains' KMs (absent: no border)."""

    domain: str
    listen: Address  # the ETSI 020 server (HTTPS, mutual TLS)
    trusted_cas: tuple[Path, ...]  # peer domains' CAs this operator allows (own CA: tls.ca)
    peers: tuple[KmInterdomainPeer, ...]
    ack_timeout_s: float = 5.0
    # Where the peers reach this 020 server (host:port in its ack_callback_url) when `listen`
    # is not it (0.0.0.0 in a container); None: `listen`.
    advertise: Address | None = None

    def peer_for(self, sae: str) -> KmInterdomainPeer | None:
        """The peer that reaches `sae`, or None when no peer does."""
        for peer in self.peers:
            if sae in peer.saes:
                return peer
        return None

    def peer_named(self, kme_id: str) -> KmInterdomainPeer | None:
        for peer in self.peers:
            if peer.kme_id == kme_id:
                return peer
        return None

    def foreign_saes(self) -> frozenset[str]:
        return frozenset(sae for peer in self.peers for sae in peer.saes)


@dataclass(frozen=True)
class KmConfig:
    file: Path
    node: str
    qkdn_id: str
    listen: KmListen
    agent: Address  # this node's agent gRPC (ETSI 004 module side, NodeLink)
    peers: tuple[KmPeer, ...]
    tls: TlsFiles
    data_dir: Path
    policy: Path | None  # access policy YAML (None: every application allowed)
    applications: Mapping[str, str]  # SAE id -> node name
    nodes: Mapping[str, str] = field(default_factory=dict)  # node name -> qkdn_id it may name
    settings: KmSettings = KmSettings()
    # Relay addresses of key managers that are not neighbours (node name -> host:port): the
    # far ends of post-quantum exchanges. Neighbours are reached at their `peers` address.
    key_managers: Mapping[str, Address] = field(default_factory=dict)
    metrics: Address | None = None  # Prometheus /metrics (None: not served)
    interdomain: KmInterdomain | None = None  # ETSI 020 hand-offs (None: not a border KM)

    @property
    def key_store_file(self) -> Path:
        return self.data_dir / "keys.sqlite"

    def node_ids(self) -> dict[str, str]:
        """Every node this KM can name, name -> qkdn_id: itself, its peers, `nodes`, and the
        nodes of its applications (by default the id derived from the name)."""
        known = {node: node_uuid(node) for node in self.applications.values()}
        known.update({peer.node: peer.qkdn_id for peer in self.peers})
        known.update(self.nodes)
        known[self.node] = self.qkdn_id
        return known

    def qkdn_id_of(self, node: str) -> str:
        """The qkdn_id of `node`; KeyError for a node this KM does not know."""
        return self.node_ids()[node]

    def name_of(self, qkdn_id: str) -> str:
        """The node name of `qkdn_id`, or the id itself when unknown."""
        for name, known in self.node_ids().items():
            if known == qkdn_id:
                return name
        return qkdn_id

    def configured_relays(self) -> dict[str, str]:
        """Peer node -> relay address, for the peers whose address this file gives."""
        return {p.node: str(p.relay) for p in self.peers if p.relay is not None}

    def peer(self, node: str) -> KmPeer:
        for peer in self.peers:
            if peer.node == node:
                return peer
        raise KeyError(f"{node!r} is not a neighbour of key manager {self.node}")


def load(path: Path, env: Mapping[str, str] | None = None) -> KmConfig:
    """The key manager configuration in `path` (QKDSDN_* variables of `env` override fields)."""
    path = Path(path).resolve()
    data = Reader.load_yaml(path, FIELDS, os.environ if env is None else env)
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> KmConfig:
    r = Reader(path)
    top = r.mapping(data, "", FIELDS)
    node = r.text(top, "node", "")
    qkdn_id = r.text(top, "qkdn_id", "", default=node_uuid(node) if node else "-")
    if top.get("qkdn_id") is not None and not is_uuid(qkdn_id):
        r.error("qkdn_id", f"{qkdn_id!r} is not a lower-case UUID")
    listen = r.mapping(
        r.required(top, "listen", ""), "listen", ("etsi014", "etsi004", "relay", "skip", "metrics")
    )
    tls = r.tls(top, "tls", "")
    if tls is None:
        r.error("tls", "missing (cert, key, ca): every KM interface is mutual TLS")
    settings = r.mapping(top.get("settings"), "settings", SETTINGS)
    defaults = KmSettings()
    min_bits = r.integer(settings, "min_key_size_bits", "settings", defaults.min_key_size_bits, 8)
    max_bits = r.integer(settings, "max_key_size_bits", "settings", defaults.max_key_size_bits, 8)
    size = r.integer(settings, "key_size_bits", "settings", defaults.key_size_bits, 8)
    for key, bits in (
        ("key_size_bits", size),
        ("min_key_size_bits", min_bits),
        ("max_key_size_bits", max_bits),
    ):
        if bits % 8:
            r.error(f"settings.{key}", f"must be a multiple of 8, not {bits}")
    if not min_bits <= size <= max_bits:
        r.error("settings.key_size_bits", f"must lie between min ({min_bits}) and max ({max_bits})")
    config = KmConfig(
        file=path,
        node=node,
        qkdn_id=qkdn_id,
        listen=KmListen(
            r.address(listen, "etsi014", "listen"),
            r.address(listen, "etsi004", "listen"),
            r.address(listen, "relay", "listen"),
            r.optional_address(listen, "skip", "listen"),
        ),
        agent=r.address(top, "agent", ""),
        peers=tuple(_peer(r, node, where, item) for where, item in r.items(top, "peers", "")),
        tls=tls or TlsFiles(path, path, path),
        data_dir=r.path(top, "data_dir", ""),
        policy=r.optional_file(top, "policy", ""),
        applications=r.names(top, "applications", "", lambda value: True),
        nodes=r.names(top, "nodes", "", is_uuid),
        settings=KmSettings(
            key_size_bits=size,
            relay_mode=r.choice(settings, "relay_mode", "settings", RELAY_MODES, "aes-gcm"),
            e2e_buffer=r.integer(settings, "e2e_buffer", "settings", defaults.e2e_buffer, 0),
            link_pool_max_bits=r.integer(
                settings, "link_pool_max_bits", "settings", defaults.link_pool_max_bits
            ),
            max_key_per_request=r.integer(
                settings, "max_key_per_request", "settings", defaults.max_key_per_request
            ),
            max_key_size_bits=max_bits,
            min_key_size_bits=min_bits,
            pqc_kem=r.choice(settings, "pqc_kem", "settings", PQC_KEMS, defaults.pqc_kem),
            pqc_batch=r.integer(settings, "pqc_batch", "settings", defaults.pqc_batch, 1),
            pqc_rekey_s=r.number(settings, "pqc_rekey_s", "settings", defaults.pqc_rekey_s),
            admission_wait_s=r.number(
                settings,
                "admission_wait_s",
                "settings",
                defaults.admission_wait_s,
                positive=False,
            ),
        ),
        key_managers=_key_managers(r, top),
        metrics=r.optional_address(listen, "metrics", "listen"),
        interdomain=_interdomain(r, top, node),
    )
    if config.settings.pqc_batch > 1024:
        r.error(
            "settings.pqc_batch", f"at most 1024 keys per exchange, not {config.settings.pqc_batch}"
        )
    seen: set[str] = set()
    for index, peer in enumerate(config.peers):
        if peer.node in seen:
            r.error(f"peers[{index}].node", f"{peer.node} appears twice")
        seen.add(peer.node)
    r.done()
    return config


def _ca_file(r: Reader, where: str, item: object) -> Path | None:
    """A CA certificate file (PEM) named in the interdomain section; None (and an error)
    when it is not one."""
    if not isinstance(item, str) or not item:
        r.error(where, f"must be a path to a CA certificate, not {item!r}")
        return None
    found = (r.base / Path(item).expanduser()).resolve()
    if not found.is_file():
        r.error(where, f"no such file: {found}")
        return found
    try:
        x509.load_pem_x509_certificates(found.read_bytes())
    except (OSError, ValueError):
        r.error(where, f"not a PEM CA certificate: {found}")
    return found


def _trusted_cas(r: Reader, section: dict[str, Any]) -> tuple[list[Path], dict[str, Path]]:
    """`trusted_cas`: a list of CA files, or a mapping peer domain -> its CA file.
    Returns (every CA, the CA of each domain named)."""
    value = section.get("trusted_cas")
    if isinstance(value, dict):
        per_domain: dict[str, Path] = {}
        for domain, item in value.items():
            found = _ca_file(r, f"interdomain.trusted_cas.{domain}", item)
            if found is not None:
                per_domain[str(domain)] = found
        return list(dict.fromkeys(per_domain.values())), per_domain
    cas: list[Path] = []
    for where, item in r.items(section, "trusted_cas", "interdomain"):
        found = _ca_file(r, where, item)
        if found is not None:
            cas.append(found)
    return cas, {}


def _peer_ca(
    r: Reader,
    fields: dict[str, Any],
    where: str,
    domain: str,
    cas: Sequence[Path],
    ca_of_domain: Mapping[str, Path],
) -> Path | None:
    """The CA a peer's certificate must be issued by: its own `ca`, else the one `trusted_cas`
    names for its domain, else the only trusted CA; several and none named: an error."""
    if fields.get("ca") is not None:
        return _ca_file(r, f"{where}.ca", fields["ca"])
    if domain in ca_of_domain:
        return ca_of_domain[domain]
    if len(cas) == 1:
        return cas[0]
    r.error(
        f"{where}.ca",
        "missing: the CA of the peer's domain (trusted_cas lists"
        f" {len(cas)} CAs; or give trusted_cas as a mapping domain -> CA file)",
    )
    return None


def _interdomain(r: Reader, top: dict[str, Any], node: str) -> KmInterdomain | None:
    if top.get("interdomain") is None:
        return None
    section = r.mapping(top["interdomain"], "interdomain", INTERDOMAIN)
    domain = r.text(section, "domain", "interdomain")
    cas, ca_of_domain = _trusted_cas(r, section)
    peers: list[KmInterdomainPeer] = []
    for where, item in r.items(section, "peers", "interdomain"):
        fields = r.mapping(item, where, INTERDOMAIN_PEER)
        peer_domain = r.text(fields, "domain", where)
        if peer_domain and peer_domain == domain:
            r.error(f"{where}.domain", f"a peer is in another domain than {domain}")
        kme_id = r.text(fields, "kme_id", where)
        if kme_id and kme_id == node:
            r.error(f"{where}.kme_id", "a key manager is not its own interdomain peer")
        url = r.text(fields, "url", where)
        if url and not url.startswith("https://"):
            r.error(f"{where}.url", f"must be an https:// URL (mutual TLS), not {url!r}")
        saes: list[str] = []
        for sae_where, sae in r.items(fields, "saes", where):
            if not isinstance(sae, str) or not sae:
                r.error(sae_where, f"must be an SAE_ID, not {sae!r}")
            else:
                saes.append(sae)
        ca = _peer_ca(r, fields, where, peer_domain, cas, ca_of_domain)
        if ca is not None and ca not in cas:
            cas.append(ca)
        peers.append(KmInterdomainPeer(peer_domain, kme_id, url.rstrip("/"), tuple(saes), ca))
    seen: dict[str, str] = {}
    for index, peer in enumerate(peers):
        for sae in peer.saes:
            if sae in seen and seen[sae] != peer.kme_id:
                r.error(
                    f"interdomain.peers[{index}].saes",
                    f"{sae} is reached through {seen[sae]} already",
                )
            seen[sae] = peer.kme_id
    names = [p.kme_id for p in peers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        r.error("interdomain.peers", f"kme_id {name} appears twice")
    if not peers:
        r.error("interdomain.peers", "a border key manager needs at least one peer")
    advertise = r.optional_address(section, "advertise", "interdomain")
    if advertise is not None and advertise.is_wildcard:
        r.error("interdomain.advertise", "must be where peers reach this KM, not 0.0.0.0 or ::")
    return KmInterdomain(
        domain=domain,
        listen=r.address(section, "listen", "interdomain"),
        trusted_cas=tuple(cas),
        peers=tuple(peers),
        ack_timeout_s=r.number(section, "ack_timeout_s", "interdomain", 5.0),
        advertise=advertise,
    )


def _key_managers(r: Reader, top: dict[str, Any]) -> dict[str, Address]:
    value = top.get("key_managers")
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.error("key_managers", "must be a mapping of node name to host:port")
        return {}
    return {str(node): r.address(value, node, "key_managers") for node in value}


def _peer(r: Reader, node: str, where: str, item: Any) -> KmPeer:
    peer = r.mapping(item, where, ("node", "qkdn_id", "relay", "qkdl_id"))
    name = r.text(peer, "node", where)
    if name and name == node:
        r.error(f"{where}.node", "a key manager is not its own peer")
    found = KmPeer(
        node=name,
        qkdn_id=r.text(peer, "qkdn_id", where, default=node_uuid(name) if name else "-"),
        relay=r.optional_address(peer, "relay", where),
        qkdl_id=r.text(peer, "qkdl_id", where, default=link_uuid(node, name) if name else "-"),
    )
    for key in ("qkdn_id", "qkdl_id"):
        if peer.get(key) is not None and not is_uuid(getattr(found, key)):
            r.error(f"{where}.{key}", f"{getattr(found, key)!r} is not a lower-case UUID")
    return found
