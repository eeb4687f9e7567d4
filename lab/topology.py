"""Topology files: one YAML file describes a whole QKD network (format: docs/topology.md).

`validate_document` is pure and names every problem at once (file, where, why);
`parse_topology` turns a valid document into frozen values; `load_topology` is the file edge.
One pass (`_Reader`) both checks and builds, so the two can never disagree.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from agents.emulator.physics import PRESETS
from km.pqc.mode import MODE_NAMES

TOPOLOGY_DIR = Path(__file__).resolve().parent / "topologies"
DEFAULT_TOPOLOGY = TOPOLOGY_DIR / "triangle.yaml"

MAX_FILE_BYTES = 1_000_000
# A twin runs a key manager process per node on one machine: keep files within reason.
MAX_NODES = 200
MAX_LINKS = 2_000
MAX_APPS = 1_000

# Node names end up in file names and in `lab fault cut A-B`, so no '-' or '.' in them.
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
# SAE ids end up in ETSI 014 URL paths and file names.
SAE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Domain names end up in process names ("controller-A") and file names ("ca-A.pem").
DOMAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")
TOPOLOGY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Names of the twin's services and processes (certificates, log files, `lab status`): an
# application may not take one, nor a node's name, so that no name means two things.
SERVICE_NAMES = frozenset({"controller", "operator", "lab", "ca", "agent", "agents", "km"})
SERVICE_PREFIXES = ("agent-", "agents-", "km-", "kms-", "sae-")

RELAY_MODES = ("aes-gcm", "otp")
BUILTIN_LINK_DEFAULTS: Mapping[str, object] = {
    "preset": "field",
    "length_km": 10.0,
    "extra_loss_db": 0.0,
    "skr_bps": None,
    "qber": None,
}

TOP_KEYS = (
    "name",
    "description",
    "settings",
    "defaults",
    "domains",
    "nodes",
    "borders",
    "links",
    "apps",
)
LINK_KEYS = ("between", "length_km", "extra_loss_db", "preset", "skr_bps", "qber")
DEFAULT_KEYS = LINK_KEYS[1:]
NODE_KEYS = ("location", "domain")
DOMAIN_KEYS = ("description", "trusts")
BORDER_KEYS = ("between",)
APP_KEYS = ("node", "key_mode")


@dataclass(frozen=True)
class TopologySettings:
    key_size_bits: int = 256
    relay_mode: str = "aes-gcm"  # or "otp"
    e2e_buffer: int = 3  # end-to-end keys relayed ahead per association
    link_pool_bits: int = 1_000_000  # capacity of each link key pool
    max_key_per_request: int = 128
    max_key_size_bits: int = 1024
    min_key_size_bits: int = 64


SETTINGS_KEYS = tuple(f.name for f in fields(TopologySettings))


@dataclass(frozen=True)
class NodeSpec:
    name: str
    location: str = ""
    domain: str = ""  # "" in a file without `domains`


@dataclass(frozen=True)
class DomainSpec:
    """One operator's part of the network: its own controller, CA and nodes."""

    name: str
    description: str = ""
    trusts: tuple[str, ...] = ()  # peer domains whose CA this domain's border KMs allow


@dataclass(frozen=True)
class BorderSpec:
    """A trusted site hosting a node of each of two domains (docs/cross-domain.md)."""

    a: str
    b: str


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    length_km: float
    extra_loss_db: float
    preset: str  # a key of agents.emulator.physics.PRESETS
    skr_bps: float | None  # explicit rate: overrides the physical model
    qber: float | None  # explicit QBER: overrides the physical model


@dataclass(frozen=True)
class AppSpec:
    sae_id: str
    node: str
    key_mode: str | None = None  # km/pqc/mode.py: toward every slave; None: the KM's default


@dataclass(frozen=True)
class Topology:
    name: str
    settings: TopologySettings
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    apps: tuple[AppSpec, ...]
    description: str = ""
    domains: tuple[DomainSpec, ...] = ()  # empty: one domain, as before domains existed
    borders: tuple[BorderSpec, ...] = ()

    def domain_of(self, node: str) -> str:
        """The domain of `node` ("" in a file without domains)."""
        for spec in self.nodes:
            if spec.name == node:
                return spec.domain
        raise KeyError(f"no node {node!r} in the topology")


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str
    line: int | None = None  # 1-based line in the file, when read from one

    def __str__(self) -> str:
        file = f"{self.file}:{self.line}" if self.line else self.file
        return f"{file}: {self.where}: {self.message}"


class TopologyError(Exception):
    """A topology that cannot be used; `problems` names every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------- helpers


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict = 2, 4, 3
    short.maxstring = short.maxother = 30
    return short


def _show(value: object) -> str:
    """A short rendering of a user value for messages: bounded even for a YAML alias bomb."""
    text = _short_repr().repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: object) -> str:
    names = {
        type(None): "nothing",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


def _join(where: str, key: object) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    text = str(key)
    part = text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else repr(text)
    return f"{where}.{part}" if where else part


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reader:
    """Reads a document into values, recording every problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.source, where or "(document)", message))

    # -- shapes

    def mapping(self, value: object, where: str, what: str) -> dict[str, object] | None:
        """The mapping's text-keyed entries, or None (with a problem) if it is not a mapping."""
        if not isinstance(value, dict):
            self.add(where, f"{what} must be a mapping, not {_type_name(value)}")
            return None
        entries: dict[str, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                entries[key] = item
            else:
                self.add(where, f"key {_show(key)} must be text, not {_type_name(key)}")
        return entries

    def known_keys(
        self, entries: Mapping[str, object], allowed: tuple[str, ...], where: str
    ) -> None:
        for key in entries:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f"; allowed: {', '.join(allowed)}"
                self.add(_join(where, key), f"unknown key {key!r}{hint}")

    # -- scalars

    def number(
        self, value: object, where: str, *, low: float = 0.0, high: float | None = None
    ) -> float | None:
        if not _is_number(value):
            self.add(where, f"must be a number, not {_type_name(value)} {_show(value)}")
            return None
        number = float(value)  # type: ignore[arg-type]  # _is_number checked int | float
        if not math.isfinite(number):
            self.add(where, f"must be a finite number, not {_show(value)}")
            return None
        if high is None and number < low:
            self.add(where, f"must be ≥ {low:g}, not {_show(value)}")
            return None
        if high is not None and not low <= number <= high:
            self.add(where, f"must be in [{low:g}, {high:g}], not {_show(value)}")
            return None
        return number

    def integer(self, value: object, where: str, low: int, high: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(where, f"must be an integer, not {_type_name(value)} {_show(value)}")
            return None
        if not low <= value <= high:
            self.add(where, f"must be in [{low}, {high}], not {value}")
            return None
        return value

    def text(self, value: object, where: str, pattern: re.Pattern[str] | None = None) -> str | None:
        if not isinstance(value, str):
            self.add(where, f"must be text, not {_type_name(value)} {_show(value)}")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.add(where, f"{value!r} is not a valid name (letters, digits, {_allowed(pattern)})")
            return None
        return value


def _allowed(pattern: re.Pattern[str]) -> str:
    if pattern is NODE_NAME:
        return "'_'; starting with a letter; at most 63"
    return "'_', '.', '-'; at most 63"


# ---------------------------------------------------------------- sections


def _read_settings(reader: _Reader, value: object) -> TopologySettings:
    if value is None:
        return TopologySettings()
    entries = reader.mapping(value, "settings", "settings")
    if entries is None:
        return TopologySettings()
    reader.known_keys(entries, SETTINGS_KEYS, "settings")
    base = TopologySettings()

    def whole(key: str, low: int, high: int, multiple_of: int = 1) -> int:
        fallback: int = getattr(base, key)
        if key not in entries:
            return fallback
        where = _join("settings", key)
        got = reader.integer(entries[key], where, low, high)
        if got is None:
            return fallback
        if got % multiple_of:
            reader.add(where, f"{got} is not a multiple of {multiple_of} (whole bytes)")
            return fallback
        return got

    min_size = whole("min_key_size_bits", 8, 65_536, 8)
    max_size = whole("max_key_size_bits", 8, 65_536, 8)
    if min_size > max_size:
        reader.add(
            "settings.min_key_size_bits",
            f"{min_size} is larger than max_key_size_bits {max_size}",
        )
    key_size = whole("key_size_bits", 8, 65_536, 8)
    if not min_size <= key_size <= max_size and min_size <= max_size:
        reader.add(
            "settings.key_size_bits",
            f"{key_size} is outside [min_key_size_bits {min_size}, max_key_size_bits {max_size}]",
        )
    relay_mode = base.relay_mode
    if "relay_mode" in entries:
        mode = entries["relay_mode"]
        if mode in RELAY_MODES:
            relay_mode = str(mode)
        else:
            reader.add(
                "settings.relay_mode",
                f"{_show(mode)} is not a relay mode; use {' or '.join(RELAY_MODES)}",
            )
    pool = whole("link_pool_bits", 8, 100_000_000)
    if pool < key_size:
        reader.add("settings.link_pool_bits", f"{pool} cannot hold one key of {key_size} bits")
    return TopologySettings(
        key_size_bits=key_size,
        relay_mode=relay_mode,
        e2e_buffer=whole("e2e_buffer", 1, 1_000),
        link_pool_bits=pool,
        max_key_per_request=whole("max_key_per_request", 1, 10_000),
        max_key_size_bits=max_size,
        min_key_size_bits=min_size,
    )


def _read_link_fields(
    reader: _Reader, entries: Mapping[str, object], where: str, inherited: Mapping[str, object]
) -> dict[str, object]:
    """The link attributes (all but `between`) of one mapping, checked, over `inherited`."""
    values = dict(inherited)
    for key in DEFAULT_KEYS:
        if key not in entries:
            continue
        value, at = entries[key], _join(where, key)
        checked: object
        if key == "preset":
            checked = value if isinstance(value, str) and value in PRESETS else None
            if checked is None:
                hint = _did_you_mean(value, PRESETS) if isinstance(value, str) else ""
                reader.add(
                    at, f"unknown preset {_show(value)}{hint}; known: {', '.join(sorted(PRESETS))}"
                )
        elif key in ("skr_bps", "qber") and value is None:
            checked = None  # explicit "use the model"
        elif key == "qber":
            checked = reader.number(value, at, high=0.5)
        else:
            checked = reader.number(value, at)
        values[key] = checked if checked is not None or value is None else inherited[key]
    return values


def _read_defaults(reader: _Reader, value: object) -> dict[str, object]:
    if value is None:
        return dict(BUILTIN_LINK_DEFAULTS)
    entries = reader.mapping(value, "defaults", "defaults")
    if entries is None:
        return dict(BUILTIN_LINK_DEFAULTS)
    reader.known_keys(entries, DEFAULT_KEYS, "defaults")
    return _read_link_fields(reader, entries, "defaults", BUILTIN_LINK_DEFAULTS)


def _read_nodes(reader: _Reader, value: object) -> tuple[NodeSpec, ...]:
    if value is None:
        reader.add("nodes", "missing: a topology needs at least one node")
        return ()
    entries = reader.mapping(value, "nodes", "nodes")
    if entries is None:
        return ()
    if not value:  # entries drops non-text keys, which are reported already
        reader.add("nodes", "empty: a topology needs at least one node")
        return ()
    if len(entries) > MAX_NODES:
        reader.add("nodes", f"{len(entries)} nodes; a twin holds at most {MAX_NODES}")
        return ()
    nodes = []
    for name, body in entries.items():
        where = _join("nodes", name)
        if reader.text(name, where, NODE_NAME) is None:
            continue
        location = domain = ""
        if body is not None:
            attributes = reader.mapping(body, where, f"node {name!r}")
            if attributes is not None:
                reader.known_keys(attributes, NODE_KEYS, where)
                raw = attributes.get("location", "")
                location = reader.text(raw, _join(where, "location")) or ""
                if "domain" in attributes:
                    at = _join(where, "domain")
                    domain = reader.text(attributes["domain"], at, DOMAIN_NAME) or ""
        nodes.append(NodeSpec(name=name, location=location, domain=domain))
    return tuple(nodes)


def _read_domains(reader: _Reader, value: object) -> tuple[DomainSpec, ...]:
    """The `domains` section (empty when absent); trusts are checked against every name."""
    if value is None:
        return ()
    entries = reader.mapping(value, "domains", "domains")
    if entries is None:
        return ()
    if not entries:
        reader.add("domains", "empty: leave `domains` out for a network of one domain")
        return ()
    names = frozenset(entries)
    domains: list[DomainSpec] = []
    for name, body in entries.items():
        where = _join("domains", name)
        if reader.text(name, where, DOMAIN_NAME) is None:
            continue
        trusts: list[str] = []
        attributes = {} if body is None else reader.mapping(body, where, f"domain {name!r}")
        if attributes is None:
            continue
        reader.known_keys(attributes, DOMAIN_KEYS, where)
        description = reader.text(attributes.get("description", ""), _join(where, "description"))
        description = description or ""
        raw = attributes.get("trusts", [])
        at = _join(where, "trusts")
        if not isinstance(raw, list):
            reader.add(at, f"must list peer domains, not {_type_name(raw)} {_show(raw)}")
            raw = []
        for index, peer in enumerate(raw):
            if not isinstance(peer, str):
                reader.add(f"{at}[{index}]", f"must be a domain name, not {_type_name(peer)}")
            elif peer == name:
                reader.add(f"{at}[{index}]", f"domain {name!r} trusts itself: its own CA always is")
            elif peer not in names:
                hint = _did_you_mean(peer, names)
                reader.add(f"{at}[{index}]", f"trust of an unknown domain {peer!r}{hint}")
            elif peer in trusts:
                reader.add(f"{at}[{index}]", f"domain {peer!r} listed twice")
            else:
                trusts.append(peer)
        domains.append(DomainSpec(name=name, description=description or "", trusts=tuple(trusts)))
    return tuple(domains)


def _check_node_domains(
    reader: _Reader, nodes: tuple[NodeSpec, ...], domains: tuple[DomainSpec, ...]
) -> None:
    """With `domains`, every node names one of them and every domain has a node; without,
    no node names a domain."""
    names = [d.name for d in domains]
    for node in nodes:
        where = _join(_join("nodes", node.name), "domain")
        if not domains and node.domain:
            reader.add(
                where,
                f"node {node.name!r} names domain {node.domain!r} but the file "
                "declares no `domains`",
            )
        elif domains and not node.domain:
            reader.add(
                _join("nodes", node.name),
                f"node {node.name!r} has no domain; this file declares domains "
                f"{', '.join(names)}: add `domain: ...`",
            )
        elif domains and node.domain not in names:
            hint = _did_you_mean(node.domain, names)
            reader.add(where, f"unknown domain {node.domain!r}{hint}; known: {', '.join(names)}")
    used = {node.domain for node in nodes}
    for domain in domains:
        if domain.name not in used:
            reader.add(_join("domains", domain.name), f"domain {domain.name!r} has no node")


def _read_borders(
    reader: _Reader, value: object, node_domains: Mapping[str, str], has_domains: bool
) -> tuple[BorderSpec, ...]:
    if value is None:
        return ()
    if not has_domains:
        reader.add("borders", "borders join domains, but the file declares no `domains`")
        return ()
    if not isinstance(value, list):
        reader.add("borders", f"borders must be a list, not {_type_name(value)}")
        return ()
    borders: list[BorderSpec] = []
    seen: dict[frozenset[str], int] = {}
    for index, item in enumerate(value):
        where = f"borders[{index}]"
        entries = reader.mapping(item, where, "a border")
        if entries is None:
            continue
        reader.known_keys(entries, BORDER_KEYS, where)
        if "between" not in entries:
            reader.add(where, "missing 'between': the two nodes of the border site")
            continue
        at = _join(where, "between")
        ends = _read_between(reader, entries["between"], at, frozenset(node_domains))
        if ends is None:
            continue
        a, b = ends
        if node_domains[a] and node_domains[a] == node_domains[b]:
            reader.add(
                at,
                f"border between {a!r} and {b!r}, both in domain {node_domains[a]!r}: a border "
                "joins two domains (within a domain, write a link)",
            )
            continue
        pair = frozenset(ends)
        if pair in seen:
            reader.add(at, f"duplicate border {a}–{b} (also borders[{seen[pair]}])")
            continue
        taken = [node for node in ends if any(node in other for other in seen)]
        if taken:
            reader.add(
                at,
                f"node {taken[0]!r} is already at a border site: a border node meets one "
                "peer domain (add another border node for another)",
            )
            continue
        seen[pair] = index
        borders.append(BorderSpec(a=a, b=b))
    return tuple(borders)


def _read_between(
    reader: _Reader, value: object, where: str, node_names: frozenset[str]
) -> tuple[str, str] | None:
    if not isinstance(value, list) or len(value) != 2:
        reader.add(where, f"must list the two nodes of the link, not {_show(value)}")
        return None
    ends: list[str] = []
    for index, end in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(end, str):
            reader.add(at, f"must be a node name, not {_type_name(end)} {_show(end)}")
        elif end not in node_names:
            hint = _did_you_mean(end, node_names)
            reader.add(where, f"unknown node {end!r}{hint}")
        else:
            ends.append(end)
    if len(ends) != 2:
        return None
    if ends[0] == ends[1]:
        reader.add(where, f"a link from {ends[0]!r} to itself")
        return None
    return ends[0], ends[1]


def _read_links(
    reader: _Reader,
    value: object,
    node_names: frozenset[str],
    defaults: Mapping[str, object],
    node_domains: Mapping[str, str] | None = None,
) -> tuple[LinkSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.add("links", f"links must be a list, not {_type_name(value)}")
        return ()
    if len(value) > MAX_LINKS:
        reader.add("links", f"{len(value)} links; a twin holds at most {MAX_LINKS}")
        return ()
    links: list[LinkSpec] = []
    seen: dict[frozenset[str], int] = {}
    for index, item in enumerate(value):
        where = f"links[{index}]"
        entries = reader.mapping(item, where, "a link")
        if entries is None:
            continue
        reader.known_keys(entries, LINK_KEYS, where)
        if "between" not in entries:
            reader.add(where, "missing 'between': the two nodes of the link")
            continue
        at = _join(where, "between")
        ends = _read_between(reader, entries["between"], at, node_names)
        # Bad attributes fall back to the defaults: the link still counts for reachability.
        attributes = _read_link_fields(reader, entries, where, defaults)
        if ends is None:
            continue
        pair = frozenset(ends)
        if pair in seen:
            reader.add(at, f"duplicate link {ends[0]}–{ends[1]} (also links[{seen[pair]}])")
            continue
        seen[pair] = index
        domains = node_domains or {}
        one, other = domains.get(ends[0], ""), domains.get(ends[1], "")
        if one and other and one != other:
            reader.add(
                at,
                f"link {ends[0]}–{ends[1]} crosses domains {one!r} and {other!r}: links stay "
                "within a domain; domains meet at `borders` (a site hosting a node of each)",
            )
            continue
        links.append(_link_spec(ends, attributes))
    return tuple(links)


def _link_spec(ends: tuple[str, str], attributes: Mapping[str, object]) -> LinkSpec:
    def optional(key: str) -> float | None:
        value = attributes[key]
        return float(value) if _is_number(value) else None  # type: ignore[arg-type]

    return LinkSpec(
        a=ends[0],
        b=ends[1],
        length_km=optional("length_km") or 0.0,
        extra_loss_db=optional("extra_loss_db") or 0.0,
        preset=str(attributes["preset"]),
        skr_bps=optional("skr_bps"),
        qber=optional("qber"),
    )


def _read_apps(reader: _Reader, value: object, node_names: frozenset[str]) -> tuple[AppSpec, ...]:
    if value is None:
        return ()
    entries = reader.mapping(value, "apps", "apps")
    if entries is None:
        return ()
    if len(entries) > MAX_APPS:
        reader.add("apps", f"{len(entries)} applications; a twin holds at most {MAX_APPS}")
        return ()
    apps: list[AppSpec] = []
    for sae_id, body in entries.items():
        where = _join("apps", sae_id)
        if reader.text(sae_id, where, SAE_ID) is None:
            continue
        clash = _name_clash(sae_id, node_names)
        if clash is not None:
            reader.add(where, clash)
            continue
        node: object = body
        key_mode: str | None = None
        if isinstance(body, dict):  # long form {node: qnode1}; short form is just the name
            attributes = reader.mapping(body, where, f"application {sae_id!r}")
            if attributes is None:
                continue
            reader.known_keys(attributes, APP_KEYS, where)
            if "node" not in attributes:
                reader.add(where, "missing 'node': where the application runs")
                continue
            mode = attributes.get("key_mode")
            if mode is not None and mode not in MODE_NAMES:
                reader.add(
                    _join(where, "key_mode"),
                    f"unknown key mode {mode!r} (known: {', '.join(MODE_NAMES)})",
                )
                continue
            key_mode = None if mode is None else str(mode)
            node, where = attributes["node"], _join(where, "node")
        if not isinstance(node, str):
            reader.add(where, f"must name the application's node, not {_type_name(node)}")
        elif node not in node_names:
            hint = _did_you_mean(node, node_names)
            reader.add(where, f"unknown node {node!r}{hint}")
        else:
            apps.append(AppSpec(sae_id=sae_id, node=node, key_mode=key_mode))
    return tuple(apps)


def _name_clash(sae_id: str, node_names: frozenset[str]) -> str | None:
    """Why an application may not be called `sae_id` (compared without case), or None."""
    folded = sae_id.casefold()
    for node in sorted(node_names):
        if node.casefold() == folded:
            return f"application {sae_id!r} is named like node {node!r}: choose another name"
    if folded in SERVICE_NAMES or folded.startswith(SERVICE_PREFIXES):
        reserved = ", ".join(sorted(SERVICE_NAMES)) + ", " + "*, ".join(SERVICE_PREFIXES) + "*"
        return f"application {sae_id!r} takes a name reserved for the twin's services ({reserved})"
    return None


def _components(nodes: Iterable[str], links: Iterable[LinkSpec | BorderSpec]) -> dict[str, str]:
    """Node → representative of its connected component over links and border sites
    (union-find, path halving)."""
    parent = {node: node for node in nodes}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for link in links:
        parent[root(link.a)] = root(link.b)
    return {node: root(node) for node in parent}


def _check_reachability(reader: _Reader, topology: Topology) -> None:
    component = _components((n.name for n in topology.nodes), (*topology.links, *topology.borders))
    apps_per_component: dict[str, int] = {}
    for app in topology.apps:
        key = component[app.node]
        apps_per_component[key] = apps_per_component.get(key, 0) + 1
    for app in topology.apps:
        if apps_per_component[component[app.node]] < 2:
            reader.add(
                _join("apps", app.sae_id),
                f"disconnected: no other application is reachable from node {app.node!r} "
                "over links" + (" and borders" if topology.domains else ""),
            )


def _read(doc: object, source: str) -> tuple[Topology | None, list[Problem]]:
    reader = _Reader(source)
    entries = reader.mapping(doc, "", "a topology")
    if entries is None:
        return None, reader.problems
    reader.known_keys(entries, TOP_KEYS, "")
    stem = Path(source).stem if source else "topology"
    name = stem
    if "name" in entries:
        name = reader.text(entries["name"], "name", TOPOLOGY_NAME) or stem
    description = reader.text(entries.get("description", ""), "description") or ""
    settings = _read_settings(reader, entries.get("settings"))
    defaults = _read_defaults(reader, entries.get("defaults"))
    before_graph = len(reader.problems)
    domains = _read_domains(reader, entries.get("domains"))
    nodes = _read_nodes(reader, entries.get("nodes"))
    _check_node_domains(reader, nodes, domains)
    names = frozenset(node.name for node in nodes)
    node_domains = {node.name: node.domain for node in nodes}
    borders = _read_borders(reader, entries.get("borders"), node_domains, bool(domains))
    links = _read_links(reader, entries.get("links"), names, defaults, node_domains)
    graph_is_sound = len(reader.problems) == before_graph
    apps = _read_apps(reader, entries.get("apps"), names)
    topology = Topology(
        name=name,
        settings=settings,
        nodes=nodes,
        links=links,
        apps=apps,
        description=description,
        domains=domains,
        borders=borders,
    )
    if graph_is_sound:  # otherwise a dropped link would make apps look disconnected
        _check_reachability(reader, topology)
    return topology, reader.problems


# ---------------------------------------------------------------- public API


def validate_document(doc: object, source: str) -> list[Problem]:
    """Every problem of a parsed YAML document; empty when it is a usable topology. Pure."""
    return _read(doc, source)[1]


def parse_topology(doc: object, source: str) -> Topology:
    """The topology of a parsed YAML document, or TopologyError naming every problem."""
    topology, problems = _read(doc, source)
    if problems or topology is None:
        raise TopologyError(problems)
    return topology


class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of silently keeping the last."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.duplicates: list[tuple[str, yaml.Mark]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by explicit keys: that is its purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                self.duplicates.append((str(key), key_node.start_mark))
        return super().construct_mapping(node, deep=deep)


def _mark(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"


def _parse_yaml(text: str, source: str) -> tuple[object, dict[str, int]]:
    """The document and the line of every place in it (keyed like Problem.where)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        doc = None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        problem = " ".join(p for p in (error.context, error.problem) if p) or "invalid YAML"
        mark = error.problem_mark or error.context_mark
        raise TopologyError([Problem(source, _mark(mark), f"YAML: {problem}")]) from None
    except yaml.YAMLError as error:
        raise TopologyError([Problem(source, "(file)", f"YAML: {error}")]) from None
    except RecursionError:
        raise TopologyError([Problem(source, "(file)", "YAML nested too deeply")]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise TopologyError(
            Problem(source, _mark(mark), f"duplicate key {key!r}")
            for key, mark in loader.duplicates
        )
    return doc, _node_lines(root)


def _node_lines(root: yaml.Node | None) -> dict[str, int]:
    """Where-path → line, walking the composed YAML once (each aliased node once)."""
    lines: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[str, yaml.Node]] = [] if root is None else [("", root)]
    while stack:
        where, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[str, yaml.Node, yaml.Node]] = []
        if isinstance(node, yaml.MappingNode):
            children = [
                (_join(where, key.value), key, value)
                for key, value in node.value
                if isinstance(key, yaml.ScalarNode)
            ]
        elif isinstance(node, yaml.SequenceNode):
            children = [(f"{where}[{i}]", item, item) for i, item in enumerate(node.value)]
        for at, marker, child in children:
            lines.setdefault(at, marker.start_mark.line + 1)
            stack.append((at, child))
    return lines


def _locate(where: str, lines: Mapping[str, int]) -> int | None:
    """The line of `where`, or of its closest enclosing place that has one."""
    while where:
        if where in lines:
            return lines[where]
        where = where[: max(where.rfind("."), where.rfind("["), 0)]
    return None


def load_topology(path: Path | str) -> Topology:
    """Reads and checks a topology file; TopologyError names every problem with its line."""
    path = Path(path)
    source = path.name
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise TopologyError([Problem(source, "(file)", f"cannot read: {error.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise TopologyError(
            [Problem(source, "(file)", f"{len(raw)} bytes; at most {MAX_FILE_BYTES}")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text (byte {error.start})"
        raise TopologyError([Problem(source, "(file)", message)]) from None
    doc, lines = _parse_yaml(text, source)
    topology, problems = _read(doc, source)
    if problems or topology is None:
        located = [replace(p, line=_locate(p.where, lines)) for p in problems]
        raise TopologyError(sorted(located, key=lambda p: p.line or 0))  # stable: file order
    return topology


def single_domain(topology: Topology) -> Topology:
    """The same network run by one operator: each border site becomes one trusted node
    (named after the border's first node) and the domains go. Its paths have the same QKD
    hops as the multi-domain chain's, which makes it the baseline the `domains` scenario
    compares against. A topology without domains is returned as it is."""
    if not topology.domains:
        return topology
    merged = {border.b: border.a for border in topology.borders}

    def site(node: str) -> str:
        while node in merged:
            node = merged[node]
        return node

    nodes = tuple(
        NodeSpec(name=node.name, location=node.location)
        for node in topology.nodes
        if node.name not in merged
    )
    links = tuple(replace(link, a=site(link.a), b=site(link.b)) for link in topology.links)
    apps = tuple(replace(app, node=site(app.node)) for app in topology.apps)
    return replace(
        topology,
        name=f"{topology.name}-single",
        nodes=nodes,
        links=links,
        apps=apps,
        domains=(),
        borders=(),
    )


def packaged_topologies() -> tuple[str, ...]:
    """Names of the topologies shipped in lab/topologies/."""
    return tuple(sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml")))


def topology_path(name_or_path: str | Path) -> Path:
    """A packaged topology by name ("triangle"), else the path as given."""
    text = str(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_-]+", text):
        packaged = TOPOLOGY_DIR / f"{text}.yaml"
        if packaged.exists() and not Path(text).exists():
            return packaged
    return Path(name_or_path)
