"""The durable consumption position of one QKD module end: a reserved high-water mark on disk.

Hi-lo reservation: before the module hands out index i, the file records a mark above i
(i + 1 + `block`), written to a temporary file, fsynced and renamed into place; so one small
write covers `block` indices. On start every index below the recorded mark counts as
consumed, whatever the previous process handed out before it stopped or crashed. The file
also holds a fingerprint of the link's seed (a hash, never the seed): a new seed restarts the
stream at 0. Key material is never written here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT_VERSION = 1


class PositionError(OSError):
    """The position file cannot be read or written; the message names the file."""


def seed_fingerprint(qkdl_id: str, seed: bytes) -> str:
    """A one-way, domain-separated fingerprint of a link seed (it reveals nothing of it)."""
    digest = hashlib.sha256(b"qkdsdn link position\x00" + qkdl_id.encode() + b"\x00" + seed)
    return digest.hexdigest()[:32]


class PositionFile:
    """The reserved mark of one module end, in `path`; every index below it may be used up."""

    def __init__(
        self, path: Path, qkdl_id: str, seed: bytes, *, block: int = 64, durable: bool = True
    ) -> None:
        if block <= 0:
            raise ValueError(f"a reservation block must be positive, got {block}")
        self.path = path
        self.block = block
        self.durable = durable
        self._fingerprint = seed_fingerprint(qkdl_id, seed)
        self.mark = self._load()
        self.start = self.mark  # the first index this process may hand out

    def __repr__(self) -> str:
        return f"PositionFile({self.path}, mark={self.mark})"

    def _load(self) -> int:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise PositionError(f"cannot read key position file {self.path}: {exc}") from None
        try:
            data = json.loads(text)
            version, fingerprint, mark = data["version"], data["seed"], data["reserved"]
        except (ValueError, KeyError, TypeError):
            raise PositionError(f"key position file {self.path} is not valid") from None
        if version != FORMAT_VERSION or not isinstance(mark, int) or mark < 0:
            raise PositionError(f"key position file {self.path} is not valid")
        if fingerprint != self._fingerprint:
            return 0  # a new seed: a new key stream, positions restart
        return mark

    def reserve(self, index: int) -> None:
        """Makes the recorded mark exceed `index` (writes only when it does not already)."""
        if index < self.mark:
            return
        mark = index + 1 + self.block
        self._write(mark)
        self.mark = mark

    def _write(self, mark: int) -> None:
        data = json.dumps({"version": FORMAT_VERSION, "seed": self._fingerprint, "reserved": mark})
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(data + "\n")
                out.flush()
                if self.durable:
                    os.fsync(out.fileno())
            os.replace(tmp, self.path)
            if self.durable:
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        except OSError as exc:
            raise PositionError(f"cannot record key position in {self.path}: {exc}") from None
