"""Writing running to disk: an atomic (optionally durable) replace, or a rewrite in place."""

from __future__ import annotations

import os
from pathlib import Path


def replace(path: Path, text: str, durable: bool) -> None:
    """Atomic replace: a reader or a crash of this process sees the old or the new file
    whole. When durable, the data reaches the disk before the rename, and the rename
    before we go on (an fsync of the directory), so a power loss keeps the last commit;
    an unreadable file is set aside at start either way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # One writer per datastore (under its lock): a fixed temporary name is enough.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as file:
            file.write(text.encode("utf-8"))
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def overwrite(path: Path, data: bytes) -> None:
    """Rewrites `path` in place with one write, without the atomic rename: on ext4 a rename
    over a file makes the kernel write the new file out first (auto_da_alloc), 450 µs a
    commit on a VM disk against 15 µs in place. The write is padded with white space up to
    the old length, which XML allows after the root, so a process killed before the final
    truncate still leaves a whole, valid document. Only a power loss can tear it; the agent
    then sets the file aside at start (what `durable` is for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(descriptor, padded(data, os.fstat(descriptor).st_size), 0)
        os.ftruncate(descriptor, len(data))
    finally:
        os.close(descriptor)


def padded(data: bytes, old_size: int) -> bytes:
    """`data` followed by spaces up to `old_size` bytes (no shorter than `data`)."""
    return data + b" " * max(0, old_size - len(data))


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX: the entry lives in the directory)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
