"""The accounts of an agent: user name, NACM group, a password hash (never the password)
and OpenSSH public keys; checking a password or a key against them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

# scrypt, as OpenSSL and Python ship it: n=2**14, r=8, p=1 costs ~16 MB and ~50 ms.
_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32


class PasswordHashError(ValueError):
    """A password hash that is not `scrypt$n$r$p$salt$hash` (says which part is wrong)."""


def hash_password(password: str, *, n: int = _N, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` (base64 without padding) for `password`."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=_R, p=_P, dklen=_HASH_BYTES, maxmem=2**26
    )
    return "$".join((_SCHEME, str(n), str(_R), str(_P), _b64(salt), _b64(digest)))


def check_hash(text: str) -> None:
    """Raises PasswordHashError unless `text` is a hash `hash_password` could have made."""
    _parse(text)


def verify_password(password: str, password_hash: str) -> bool:
    n, r, p, salt, expected = _parse(password_hash)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**26
    )
    return hmac.compare_digest(digest, expected)


def _parse(text: str) -> tuple[int, int, int, bytes, bytes]:
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise PasswordHashError("a password hash reads scrypt$n$r$p$salt$hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as error:
        raise PasswordHashError(f"password hash has a bad number or base64 part: {error}") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise PasswordHashError("password hash: n must be a power of 2, r in 1..64, p in 1..16")
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("password hash: salt or digest too short")
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class User:
    """One account. `password_hash` None: keys only; `authorized_keys`: OpenSSH lines."""

    name: str
    group: str
    password_hash: str | None = field(default=None, repr=False)
    authorized_keys: tuple[str, ...] = ()


class Accounts:
    """The users of one agent, by name. Each check costs the same for unknown users."""

    def __init__(self, users: Iterable[User]) -> None:
        self._users: dict[str, User] = {}
        for user in users:
            if user.name in self._users:
                raise ValueError(f"user {user.name!r} is configured twice")
            self._users[user.name] = user
        self._dummy: str | None = None  # made at the first failed login, not per agent

    def __contains__(self, name: str) -> bool:
        return name in self._users

    def users(self) -> tuple[User, ...]:
        return tuple(self._users.values())

    def group_members(self) -> dict[str, tuple[str, ...]]:
        """Group → the names of its users (the NACM groups the agent starts with)."""
        members: dict[str, list[str]] = {}
        for user in self._users.values():
            members.setdefault(user.group, []).append(user.name)
        return {group: tuple(names) for group, names in members.items()}

    def password_ok(self, name: str, password: str) -> bool:
        user = self._users.get(name)
        stored = user.password_hash if user is not None else None
        # Unknown user or no password: hash anyway, so timing does not tell users apart.
        if stored is None and self._dummy is None:
            self._dummy = hash_password(secrets.token_hex(8))
        ok = verify_password(password, stored or self._dummy or "")
        return ok and stored is not None

    def has_password(self, name: str) -> bool:
        user = self._users.get(name)
        return user is not None and user.password_hash is not None

    def keys_of(self, name: str) -> tuple[str, ...]:
        user = self._users.get(name)
        return user.authorized_keys if user is not None else ()
