"""Who may call the controller's HTTP API: bearer tokens read from files, each with a role.

Roles, lowest first: viewer (every read), operator (also install and withdraw intents), admin
(also the controller's policy and configuration). Beside them, `peer` (caller `peer:NAME`) is
a peer domain's controller: it may call `/interdomain/*` and nothing else, and of
`/interdomain/*` the other roles may only read the view and the reservations. Every call needs a credential:
`Authorization: Bearer <token>`. No token, a malformed header or an unknown token gives 401;
a known token whose role is too low for the call gives 403; both with a reason. Comparisons
take the same time whatever the token sent (hmac.compare_digest, every token compared).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_TOKEN_CHARS = 16
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiRole(enum.IntEnum):
    PEER = 0  # a peer domain's controller: /interdomain/* only (not above or below the others)
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @staticmethod
    def named(name: str) -> ApiRole:
        try:
            return ApiRole[name.upper()]
        except KeyError:
            roles = ", ".join(r.label for r in ApiRole)
            raise ValueError(f"unknown role {name!r} (one of {roles})") from None


class TokenError(ValueError):
    """The token file is missing, unreadable or too weak; the message names the file."""


@dataclass(frozen=True, repr=False)
class ApiToken:
    value: bytes

    def __repr__(self) -> str:  # never the secret
        return "ApiToken(...)"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the name its credential stands for, and its role."""

    name: str
    role: ApiRole


@dataclass(frozen=True, repr=False)
class ApiTokens:
    """The tokens the API accepts, each standing for one caller."""

    entries: tuple[tuple[ApiToken, Caller], ...]

    def __repr__(self) -> str:
        return f"ApiTokens({', '.join(c.name for _, c in self.entries)})"

    @staticmethod
    def single(token: ApiToken, role: ApiRole = ApiRole.ADMIN) -> ApiTokens:
        return ApiTokens(((token, Caller(f"token:{role.label}", role)),))

    @staticmethod
    def from_files(files: Mapping[ApiRole, Path]) -> ApiTokens:
        """One token file per role; TokenError names a bad file, ValueError a reused token."""
        entries = tuple(
            (load_api_token(path), Caller(f"token:{role.label}", role))
            for role, path in sorted(files.items())
        )
        values = [token.value for token, _ in entries]
        if len(set(values)) != len(values):
            raise TokenError("the same token is given for two roles: each role needs its own")
        return ApiTokens(entries)

    def with_peers(self, peers: Mapping[str, ApiToken]) -> ApiTokens:
        """These tokens plus one `peer` token per peer domain (caller `peer:NAME`); ValueError
        when a token is given twice."""
        entries = self.entries + tuple(
            (token, Caller(f"peer:{name}", ApiRole.PEER)) for name, token in sorted(peers.items())
        )
        values = [token.value for token, _ in entries]
        if len(set(values)) != len(values):
            raise TokenError("a peer domain's token is also given for another caller")
        return ApiTokens(entries)

    def caller(self, given: bytes) -> Caller | None:
        found: Caller | None = None
        for token, caller in self.entries:  # all compared: the time does not tell which
            if hmac.compare_digest(given, token.value):
                found = caller
        return found


def load_api_token(path: Path) -> ApiToken:
    """The token in `path` (surrounding whitespace ignored), at least MIN_TOKEN_CHARS long."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenError(f"{path}: cannot read the API token: {error}") from None
    if len(text) < MIN_TOKEN_CHARS:
        raise TokenError(f"{path}: the API token must be at least {MIN_TOKEN_CHARS} characters")
    return ApiToken(text.encode("utf-8"))


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 or 403
    detail: str
    caller: Caller | None = None  # the authenticated caller of a 403


INTERDOMAIN = "/interdomain"
INTERDOMAIN_READS = frozenset(
    {"/interdomain/view", "/interdomain/reservations", "/interdomain/peers"}
)


def is_interdomain(path: str) -> bool:
    return path == INTERDOMAIN or path.startswith(INTERDOMAIN + "/")


def interdomain_refusal(caller: Caller, method: str, path: str) -> str:
    """Why `caller` may not make this call across the peer boundary; "" when it may. Pure."""
    if caller.role is ApiRole.PEER:
        return "" if is_interdomain(path) else f"a peer domain may only call {INTERDOMAIN}/*"
    if not is_interdomain(path):
        return ""
    if method.upper() in READ_METHODS and path in INTERDOMAIN_READS:
        return ""
    return f"role {caller.role.label} may not {method.upper()} {path}: it needs peer"


def required_role(method: str, path: str) -> ApiRole:
    """The lowest role that may make this call (the `peer` role aside). Pure."""
    method = method.upper()
    if method in READ_METHODS or (method == "POST" and path == "/admit"):  # admit: what-if
        return ApiRole.VIEWER
    if path == "/intents" or path.startswith("/intents/"):
        return ApiRole.OPERATOR
    return ApiRole.ADMIN  # policy, configuration, anything new: the safe default


def check_request(
    method: str, path: str, authorization: str | None, tokens: ApiTokens
) -> Caller | Refusal:
    """The caller when it may make this call; otherwise the HTTP refusal. Pure."""
    if not authorization:
        return Refusal(401, "no credential: send Authorization: Bearer <token>")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(401, "the Authorization header must be 'Bearer <token>'")
    caller = tokens.caller(given.strip().encode("utf-8"))
    if caller is None:
        return Refusal(401, "unknown API token")
    if caller.role is ApiRole.PEER or is_interdomain(path):
        refused = interdomain_refusal(caller, method, path)
        return Refusal(403, refused, caller) if refused else caller
    needed = required_role(method, path)
    if caller.role < needed:
        return Refusal(
            403,
            f"role {caller.role.label} may not {method.upper()} {path}: it needs {needed.label}",
            caller,
        )
    return caller
