"""SKIP requests to responses without sockets: parsing, identity, access control, key supply.

`SkipService.respond(caller, method, path, query)` is the whole protocol: the ASGI edge
(`km/skip/app.py`) only hands it the caller's SAE_ID (from the TLS client certificate) and the
request line, and writes back the `SkipResponse`.

Mapping onto the key manager (docs/skip.md):
- the SKIP client is an SAE: its SAE_ID (certificate URI SAN `urn:qkdsdn:sae:ID`) is the
  `localSystemID`; a `remoteSystemID` is the SAE_ID of the peer, as in ETSI 014;
- `GET /key?remoteSystemID=B` is ETSI 014 `enc_keys` with master = caller, slave = B, one key;
- `GET /key/{keyId}?remoteSystemID=A` is `dec_keys` with master = A: the same store, so a key
  drawn over SKIP may be fetched over ETSI 014 and the other way round;
- keyId is the ETSI key_ID (a UUID) as 32 hex digits; key material is hex.
Refusals change nothing: a key is consumed only by the request that returns it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from km.access import AccessControl, AccessDenied, Refusal
from km.consumption import ConsumptionLedger
from km.key_store import StoredKey, key_id_value
from km.supply import KeySupply, SupplyError

log = logging.getLogger(__name__)

MAX_SYSTEM_ID_CHARS = 256
_HEX_ID = re.compile(r"[0-9a-fA-F]{32}")
_UUID_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DIGITS = re.compile(r"[0-9]{1,9}")
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True)
class SkipLimits:
    key_size_bits: int = 256  # size of GET /key without `size`
    min_key_size_bits: int = 64
    max_key_size_bits: int = 1024
    entropy_bits: int = 256  # size of GET /entropy without `minentropy`
    max_entropy_bits: int = 8192
    algorithm: str = "QKD"  # `algorithm` of /capabilities: keys are relayed QKD keys


@dataclass(frozen=True)
class Capabilities:
    pass


@dataclass(frozen=True)
class NewKey:
    remote: str
    size_bits: int | None


@dataclass(frozen=True)
class KeyById:
    key_id: str  # canonical ETSI key_ID (UUID text)
    remote: str


@dataclass(frozen=True)
class Entropy:
    bits: int | None


SkipRequest = Capabilities | NewKey | KeyById | Entropy


@dataclass(frozen=True, repr=False)
class SkipResponse:
    """Status, JSON body and extra headers. `repr` never shows the body (it may hold a key)."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = (_JSON,)

    def __repr__(self) -> str:
        return f"SkipResponse(status={self.status}, body=<{len(self.body)} bytes>)"

    __str__ = __repr__

    def json(self) -> object:
        return json.loads(self.body)


class SkipError(Exception):
    """A refusal: HTTP status and a message naming what is wrong (never key material)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        allow: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow
        self.retry_after_s = retry_after_s

    def response(self) -> SkipResponse:
        headers = [_JSON]
        if self.allow is not None:
            headers.append((b"allow", self.allow.encode("ascii")))
        if self.retry_after_s is not None and self.retry_after_s != float("inf"):
            retry = max(1, round(self.retry_after_s + 0.5))
            headers.append((b"retry-after", str(retry).encode("ascii")))
        body = json.dumps({"status": self.status, "message": self.message}).encode("utf-8")
        return SkipResponse(self.status, body, tuple(headers))


def parse_request(method: str, path: str, query: bytes) -> SkipRequest:
    """The request of a SKIP call; SkipError 404 (no such resource), 405 (not GET) or 400
    (malformed parameter: the message names it)."""
    if path in ("/capabilities", "/key", "/entropy"):
        resource = path
    elif path.startswith("/key/") and path.count("/") == 2:
        resource = "/key/{keyId}"
    else:
        raise SkipError(404, f"no SKIP resource {path[:80]!r}")
    if method != "GET":
        raise SkipError(405, f"{resource} answers GET only", allow="GET")
    if resource == "/capabilities":
        _query(query, ())
        return Capabilities()
    if resource == "/entropy":
        params = _query(query, ("minentropy",))
        return Entropy(_bits(params, "minentropy"))
    if resource == "/key":
        params = _query(query, ("remoteSystemID", "size"))
        return NewKey(_remote(params), _bits(params, "size"))
    params = _query(query, ("remoteSystemID",))
    return KeyById(parse_key_id(path[len("/key/") :]), _remote(params))  # path: decoded


def parse_key_id(text: str) -> str:
    """The canonical key_ID of a SKIP keyId (32 hex digits; the UUID form is accepted too)."""
    if _HEX_ID.fullmatch(text):
        digits = text.lower()
    elif _UUID_ID.fullmatch(text):
        digits = text.replace("-", "").lower()
    else:
        raise SkipError(400, "keyId must be 32 hexadecimal digits")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def skip_key_id(key_id: str) -> str:
    """The SKIP keyId (32 lower-case hex digits) of an ETSI key_ID."""
    value = key_id_value(key_id)
    if value is None:
        raise ValueError(f"not a canonical key_ID: {key_id!r}")
    return f"{value:032x}"


def _query(query: bytes, allowed: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    if not query:
        return params
    try:
        text = query.decode("ascii")
    except UnicodeDecodeError:
        raise SkipError(400, "the query string is not ASCII") from None
    for part in text.split("&"):
        name, equals, value = part.partition("=")
        name, value = unquote(name.replace("+", " ")), unquote(value.replace("+", " "))
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise SkipError(400, f"unknown query parameter {name[:40]!r} (accepted: {known})")
        if not equals:
            raise SkipError(400, f"query parameter {name} has no value")
        if name in params:
            raise SkipError(400, f"query parameter {name} given twice")
        params[name] = value
    return params


def _remote(params: dict[str, str]) -> str:
    remote = params.get("remoteSystemID")
    if not remote:
        raise SkipError(400, "remoteSystemID is required")
    if len(remote) > MAX_SYSTEM_ID_CHARS or not remote.isprintable():
        raise SkipError(400, "remoteSystemID is not a system identifier")
    return remote


def _bits(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise SkipError(400, f"{name} must be a positive number of bits")
    return int(value)


class SkipService:
    """The key provider of one KM for its SAEs, over the key supply ETSI 014 uses."""

    def __init__(
        self,
        supply: KeySupply,
        access: AccessControl,
        limits: SkipLimits | None = None,
        consumption: ConsumptionLedger | None = None,
    ) -> None:
        """`consumption`: where the bits handed out are counted per (master, slave), as
        ETSI 014 counts them (None: not counted)."""
        self.supply = supply
        self.access = access
        self.limits = limits or SkipLimits()
        self.consumption = consumption

    async def respond(
        self, caller: str | None, method: str, path: str, query: bytes
    ) -> SkipResponse:
        """The answer to one call; every failure is a SKIP error response."""
        try:
            request = parse_request(method, path, query)
            return await self.handle(self._known_caller(caller), request)
        except SkipError as exc:
            return exc.response()
        except Exception as exc:  # never a traceback (or a key) to the client
            log.error("internal error in a SKIP request: %s", type(exc).__name__)
            return SkipError(500, "internal error of the key provider").response()

    async def handle(self, caller: str, request: SkipRequest) -> SkipResponse:
        if isinstance(request, Capabilities):
            return self.capabilities(caller)
        if isinstance(request, Entropy):
            return self.entropy(request.bits)
        if isinstance(request, NewKey):
            return _key_response(await self.new_key(caller, request))
        return _key_response(self.key_by_id(caller, request))

    def capabilities(self, caller: str) -> SkipResponse:
        policy = self.access.policy
        min_bits = self.limits.min_key_size_bits
        remotes = sorted(
            sae
            for sae in self.supply.sae_nodes
            if sae != caller and policy.decide(caller, [sae], min_bits) is None
        )
        body = {
            "entropy": True,
            "key": True,
            "algorithm": self.limits.algorithm,
            "localSystemID": caller,
            "remoteSystemID": remotes,
        }
        return SkipResponse(200, json.dumps(body).encode("utf-8"))

    def entropy(self, bits: int | None) -> SkipResponse:
        limits = self.limits
        bits = limits.entropy_bits if bits is None else bits
        if bits % 8 or not 8 <= bits <= limits.max_entropy_bits:
            raise SkipError(
                400, f"minentropy must be a multiple of 8 in 8..{limits.max_entropy_bits}"
            )
        random = secrets.token_bytes(bits // 8).hex()
        body = f'{{"randomStr":"{random}","minentropy":{bits}}}'.encode("ascii")
        return SkipResponse(200, body, (_JSON, _NO_STORE))

    async def new_key(self, caller: str, request: NewKey) -> StoredKey:
        limits = self.limits
        size = limits.key_size_bits if request.size_bits is None else request.size_bits
        if size % 8 or not limits.min_key_size_bits <= size <= limits.max_key_size_bits:
            raise SkipError(
                400,
                f"size must be a multiple of 8 in "
                f"{limits.min_key_size_bits}..{limits.max_key_size_bits} bits",
            )
        remote = self._known_remote(caller, request.remote)
        self._check_access(caller, remote, 1, size)
        try:
            keys = await self.supply.enc_keys(caller, [remote], 1, size)
        except SupplyError as exc:
            raise _supply_refusal(exc, unknown_key=400) from None
        if self.consumption is not None:
            self.consumption.add(caller, remote, 1, keys[0].size_bits)
        return keys[0]

    def key_by_id(self, caller: str, request: KeyById) -> StoredKey:
        remote = self._known_remote(caller, request.remote)
        self._check_access(caller, remote, 1, 0)
        try:
            (key,) = self.supply.dec_keys(caller, remote, [request.key_id])
        except SupplyError as exc:
            raise _supply_refusal(exc, unknown_key=404) from None
        if self.consumption is not None:
            self.consumption.add(remote, caller, 1, key.size_bits)
        return key

    def _known_caller(self, caller: str | None) -> str:
        if caller is None:
            raise SkipError(
                401, "the client certificate is not an application's (urn:qkdsdn:sae:ID)"
            )
        if self.supply.sae_nodes.get(caller) != self.supply.node:
            raise SkipError(401, f"system {caller!r} is not served by this key provider")
        return caller

    def _known_remote(self, caller: str, remote: str) -> str:
        if remote not in self.supply.sae_nodes:
            raise SkipError(400, f"unknown remoteSystemID {remote!r}")
        if remote == caller:
            raise SkipError(400, "remoteSystemID is the caller itself")
        return remote

    def _check_access(self, caller: str, remote: str, number: int, size: int) -> None:
        try:
            self.access.check(caller, [remote], number, size)
        except AccessDenied as exc:
            status = {
                Refusal.KEY_TOO_LARGE: 400,
                Refusal.RATE_EXCEEDED: 503,
            }.get(exc.refusal, 403)
            raise SkipError(status, exc.message, retry_after_s=exc.retry_after_s) from None


def _supply_refusal(exc: SupplyError, *, unknown_key: int) -> SkipError:
    # The supply speaks ETSI 014 (400, 401, 503): 401 there is a key or peer that is not the
    # caller's (403 here); 400 on a keyId is a key that is not (or no longer) there (404).
    status = {401: 403, 400: unknown_key}.get(exc.status_code, exc.status_code)
    return SkipError(status, exc.message)


def _key_response(key: StoredKey) -> SkipResponse:
    body = f'{{"keyId":"{skip_key_id(key.key_id)}","key":"{key.material.hex()}"}}'
    return SkipResponse(200, body.encode("ascii"), (_JSON, _NO_STORE))
