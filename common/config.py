"""Reading a process's YAML configuration: typed fields, every error named, env overrides.

The parts (agents/, km/, controller/) describe their own files with `Reader`; this module
only knows YAML, addresses, paths and the `QKDSDN_<FIELD>__<SUB>` override convention.
A `Reader` collects every problem as "FILE: field.path: why" and `Reader.done()` raises them
all at once in one `ConfigError`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

ENV_PREFIX = "QKDSDN_"
T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file that cannot be used; `errors` lists every bad field."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Address:
    """A TCP address: `host` is an IPv4/IPv6 address or a host name, `port` 0..65535."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    @property
    def reachable(self) -> Address:
        """Where a client on the same host connects to reach a server listening here."""
        if self.host == "0.0.0.0":
            return Address("127.0.0.1", self.port)
        if self.host == "::":
            return Address("::1", self.port)
        return self

    def url(self, scheme: str) -> str:
        return f"{scheme}://{self.reachable}"


def parse_address(text: str) -> Address:
    """ "host:port" or "[v6]:port"; raises ValueError saying what is wrong."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [IPv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port_text}")
        if host.replace(".", "").isdigit():
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif not _is_hostname(host):
            raise ValueError(f"{host!r} is not an IP address or a host name")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return Address(host, int(port_text))


def _is_hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(
        0 < len(label) <= 63
        and label.replace("-", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


@dataclass(frozen=True)
class TlsFiles:
    """A TLS identity (certificate, private key) and the CA that signs the peers it accepts."""

    cert: Path
    key: Path
    ca: Path


def apply_env(data: dict[str, Any], fields: Sequence[str], env: Mapping[str, str]) -> None:
    """QKDSDN_LISTEN__RELAY=0.0.0.0:7000 sets data["listen"]["relay"] (value read as YAML).

    Only variables whose first level is one of `fields` apply (QKDSDN_TRACE_FILE and the
    like belong to other code); a number between "__" indexes a list."""
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in fields or not all(path):
            continue
        value = _env_value(env[name])
        target: Any = data
        for part in path[:-1]:
            target = _child(target, part)
        _set(target, path[-1], value)


def _env_value(text: str) -> Any:
    """A number, boolean, null, list or mapping when the text is one in YAML; else the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool | int | float | list | dict) or (value is None and text):
        return value
    return text


def _child(target: Any, part: str) -> Any:
    if isinstance(target, list) and part.isdigit() and int(part) < len(target):
        return target[int(part)]
    if isinstance(target, dict):
        if not isinstance(target.get(part), dict | list):
            target[part] = {}
        return target[part]
    raise ValueError(f"environment override: no field {part!r} here")


def _set(target: Any, part: str, value: Any) -> None:
    if isinstance(target, list) and part.isdigit() and int(part) < len(target):
        target[int(part)] = value
    elif isinstance(target, dict):
        target[part] = value
    else:
        raise ValueError(f"environment override: no field {part!r} here")


class Reader:
    """Reads typed fields out of a config file's mapping, recording every problem."""

    def __init__(self, file: Path) -> None:
        self.source = file
        self.base = file.parent
        self.errors: list[str] = []

    def error(self, path: str, why: str) -> None:
        self.errors.append(f"{self.source}: {path}: {why}")

    def done(self) -> None:
        if self.errors:
            raise ConfigError(self.errors)

    @staticmethod
    def load_yaml(file: Path, fields: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
        """The file's top-level mapping with the environment's overrides applied."""
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError([f"{file}: cannot read: {error.strerror or error}"]) from None
        except yaml.YAMLError as error:
            raise ConfigError([f"{file}: not YAML: {error}"]) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError([f"{file}: the top level must be a mapping of fields"])
        try:
            apply_env(data, fields, env)
        except ValueError as error:
            raise ConfigError([f"{file}: {error}"]) from None
        return data

    # ---- structure ---------------------------------------------------------------------------

    def mapping(self, data: Any, path: str, fields: Sequence[str]) -> dict[str, Any]:
        """`data` as a mapping with only `fields` (an unknown field is an error: a typo)."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.error(path or "(top level)", "must be a mapping")
            return {}
        for key in data:
            if key not in fields:
                where = f"{path}.{key}" if path else str(key)
                self.error(where, f"unknown field (known: {', '.join(fields)})")
        return data

    def items(self, data: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """(path of the item, item) for a list field; a missing list is empty."""
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(_join(path, key), "must be a list")
            return []
        return [(f"{_join(path, key)}[{index}]", item) for index, item in enumerate(value)]

    def required(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        if data.get(key) is None:
            self.error(_join(path, key), "missing")
        return data.get(key)

    # ---- scalars -----------------------------------------------------------------------------

    def text(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = data.get(key)
        if value is None:
            if default is None:
                self.error(_join(path, key), "missing")
            return default or ""
        if not isinstance(value, str) or not value.strip():
            self.error(_join(path, key), f"must be a non-empty string, not {value!r}")
            return default or ""
        return value

    def optional_text(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        if data.get(key) is None:
            return None
        return self.text(data, key, path)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.error(_join(path, key), f"must be true or false, not {value!r}")
            return default
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: int | None = None,
        minimum: int = 1,
    ) -> int:
        value = data.get(key, default)
        if value is None:
            self.error(_join(path, key), "missing")
            return minimum
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(_join(path, key), f"must be an integer, not {value!r}")
            return minimum
        if value < minimum:
            self.error(_join(path, key), f"must be at least {minimum}, not {value}")
            return minimum
        return value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: float | None = None,
        *,
        positive: bool = True,
    ) -> float:
        value = data.get(key, default)
        if value is None:
            self.error(_join(path, key), "missing")
            return 1.0
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(_join(path, key), f"must be a number, not {value!r}")
            return 1.0
        if positive and not value > 0:
            self.error(_join(path, key), f"must be > 0, not {value}")
            return 1.0
        if not positive and value < 0:
            self.error(_join(path, key), f"must be >= 0, not {value}")
            return 0.0
        return float(value)

    def optional_number(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        if data.get(key) is None:
            return None
        return self.number(data, key, path, positive=False)

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, choices: Sequence[str], default: str
    ) -> str:
        value = data.get(key, default)
        if value not in choices:
            self.error(_join(path, key), f"{value!r} is not one of {', '.join(choices)}")
            return default
        return str(value)

    def address(self, data: Mapping[str, Any], key: str, path: str) -> Address:
        value = data.get(key)
        if value is None:
            self.error(_join(path, key), "missing (host:port)")
            return Address("127.0.0.1", 0)
        try:
            return parse_address(str(value))
        except ValueError as error:
            self.error(_join(path, key), str(error))
            return Address("127.0.0.1", 0)

    def optional_address(self, data: Mapping[str, Any], key: str, path: str) -> Address | None:
        if data.get(key) is None:
            return None
        return self.address(data, key, path)

    def path(self, data: Mapping[str, Any], key: str, path: str, default: str = "") -> Path:
        """A path (relative to the file's folder) that need not exist yet."""
        value = data.get(key, default or None)
        if value is None or not isinstance(value, str) or not value:
            self.error(_join(path, key), "missing (a path)" if value is None else "must be a path")
            return self.base
        return (self.base / Path(value).expanduser()).resolve()

    def file(self, data: Mapping[str, Any], key: str, path: str) -> Path:
        """A path to a file that must exist and be readable."""
        found = self.path(data, key, path)
        if data.get(key) and isinstance(data.get(key), str) and not found.is_file():
            self.error(_join(path, key), f"no such file: {found}")
        elif found.is_file() and not os.access(found, os.R_OK):
            self.error(_join(path, key), f"cannot read {found}")
        return found

    def optional_file(self, data: Mapping[str, Any], key: str, path: str) -> Path | None:
        if data.get(key) is None:
            return None
        return self.file(data, key, path)

    def tls(self, data: Mapping[str, Any], key: str, path: str) -> TlsFiles | None:
        """cert, key and ca files, or None when the field is absent."""
        if data.get(key) is None:
            return None
        where = _join(path, key)
        section = self.mapping(data[key], where, ("cert", "key", "ca"))
        return TlsFiles(
            self.file(section, "cert", where),
            self.file(section, "key", where),
            self.file(section, "ca", where),
        )

    def names(
        self, data: Mapping[str, Any], key: str, path: str, check: Callable[[str], bool]
    ) -> dict[str, str]:
        """A mapping of names to strings (both non-empty; values pass `check`)."""
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(_join(path, key), "must be a mapping")
            return {}
        found: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(item, str) or not item or not check(item):
                self.error(f"{_join(path, key)}.{name}", f"bad value {item!r}")
            else:
                found[str(name)] = item
        return found


def is_uuid(text: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


C = TypeVar("C")


def load_each(
    paths: Sequence[Path], load: Callable[[Path], C], name_of: Callable[[C], str], what: str
) -> list[C]:
    """Every file's configuration (one process hosting several); one ConfigError listing the
    problems of all of them, and each `what` configured twice."""
    configs: list[C] = []
    errors: list[str] = []
    for path in paths:
        try:
            configs.append(load(path))
        except ConfigError as error:
            errors.extend(error.errors)
    names = [name_of(config) for config in configs]
    errors += [f"{what} {n} is configured twice" for n in sorted(set(names)) if names.count(n) > 1]
    if errors:
        raise ConfigError(errors)
    return configs
