"""ML-KEM (FIPS 203) through `cryptography`: key pairs, encapsulation, decapsulation, by name."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import mlkem


class KemError(ValueError):
    """A malformed encapsulation key or ciphertext (the message never contains a secret)."""


class Kem(enum.Enum):
    ML_KEM_768 = "ML-KEM-768"
    ML_KEM_1024 = "ML-KEM-1024"

    @staticmethod
    def parse(name: str) -> Kem:
        for kem in Kem:
            if kem.value == name:
                return kem
        choices = ", ".join(k.value for k in Kem)
        raise KemError(f"unknown KEM {name!r} (known: {choices})")

    @property
    def encapsulation_key_bytes(self) -> int:
        return 1184 if self is Kem.ML_KEM_768 else 1568

    @property
    def ciphertext_bytes(self) -> int:
        return 1088 if self is Kem.ML_KEM_768 else 1568


_Private = type[mlkem.MLKEM768PrivateKey] | type[mlkem.MLKEM1024PrivateKey]
_Public = type[mlkem.MLKEM768PublicKey] | type[mlkem.MLKEM1024PublicKey]
_PRIVATE: dict[Kem, _Private] = {
    Kem.ML_KEM_768: mlkem.MLKEM768PrivateKey,
    Kem.ML_KEM_1024: mlkem.MLKEM1024PrivateKey,
}
_PUBLIC: dict[Kem, _Public] = {
    Kem.ML_KEM_768: mlkem.MLKEM768PublicKey,
    Kem.ML_KEM_1024: mlkem.MLKEM1024PublicKey,
}


@dataclass(frozen=True, repr=False)
class DecapsulationKey:
    """An ephemeral ML-KEM private key and its encapsulation key; `repr` hides the key."""

    kem: Kem
    _key: mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey
    encapsulation_key: bytes

    def __repr__(self) -> str:
        return f"DecapsulationKey({self.kem.value}, <hidden>)"

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The 32-byte shared secret; KemError for a ciphertext of the wrong length. A
        well-formed but wrong ciphertext yields an unrelated secret (implicit rejection):
        the key confirmation of the exchange catches it."""
        if len(ciphertext) != self.kem.ciphertext_bytes:
            raise KemError(
                f"{self.kem.value} ciphertext of {len(ciphertext)} bytes,"
                f" expected {self.kem.ciphertext_bytes}"
            )
        try:
            return self._key.decapsulate(ciphertext)
        except ValueError:
            raise KemError(f"malformed {self.kem.value} ciphertext") from None


def generate(kem: Kem, seed: bytes | None = None) -> DecapsulationKey:
    """A fresh key pair (or the one of a 64-byte FIPS 203 seed d‖z, for known-answer tests)."""
    cls = _PRIVATE[kem]
    key = cls.generate() if seed is None else cls.from_seed_bytes(seed)
    return DecapsulationKey(kem, key, key.public_key().public_bytes_raw())


def encapsulate(kem: Kem, encapsulation_key: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) for the holder of `encapsulation_key`; KemError if malformed."""
    if len(encapsulation_key) != kem.encapsulation_key_bytes:
        raise KemError(
            f"{kem.value} encapsulation key of {len(encapsulation_key)} bytes,"
            f" expected {kem.encapsulation_key_bytes}"
        )
    try:
        public = _PUBLIC[kem].from_public_bytes(encapsulation_key)
        secret, ciphertext = public.encapsulate()
    except ValueError:
        raise KemError(f"malformed {kem.value} encapsulation key") from None
    return secret, ciphertext
