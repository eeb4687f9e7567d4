"""The bearer token of the controller's HTTP API: read from its file, and checked per request.

Every state-changing call (any method but GET, HEAD and OPTIONS) must carry
`Authorization: Bearer <token>`: none gives 401, a wrong one 403. The comparison takes the
same time whatever the token sent (hmac.compare_digest). Reads stay open: they show the
topology and the intents (names, paths, rates), never key material nor a secret, and the API
listens on the loopback only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

MIN_TOKEN_CHARS = 16
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenError(ValueError):
    """The token file is missing, unreadable or too weak; the message names the file."""


@dataclass(frozen=True, repr=False)
class ApiToken:
    value: bytes

    def __repr__(self) -> str:  # never the secret
        return "ApiToken(...)"


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


def check_request(method: str, authorization: str | None, token: ApiToken) -> Refusal | None:
    """None when the request may go on; otherwise the HTTP refusal. Pure."""
    if method.upper() in READ_METHODS:
        return None
    if not authorization:
        return Refusal(401, "this call changes state: send Authorization: Bearer <token>")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(401, "the Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.value):
        return Refusal(403, "wrong API token")
    return None
