"""All nodes or none: one transaction of per-device edits over NETCONF candidates.

Phase 1, on every node at once: lock the candidate, edit it with validation (the edit's
test-then-set makes the node validate the whole candidate and refuse an invalid edit, which
saves a <validate> round trip per node). Any failure: discard and unlock everywhere; nothing
changed. Phase 2: commit everywhere. Agents veto at commit (the
change reaches the node's key manager then), so a commit can fail after others succeeded: the
nodes that did commit get the caller's undo edits committed, so no partial state remains.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from controller.errors import ControllerError, InstallError
from controller.intents.compile import DeviceEdit
from controller.model import DeviceId

log = logging.getLogger(__name__)
T = TypeVar("T")


class CandidateOps(Protocol):
    """What a transaction needs of a device session (NetconfSession has it)."""

    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    def edit_candidate(self, config: str) -> None: ...  # validates the candidate too
    def commit(self) -> None: ...
    def discard_changes(self) -> None: ...


Runner = Callable[[DeviceId, Callable[[CandidateOps], T]], Awaitable[T]]


def _prepare(config: str) -> Callable[[CandidateOps], None]:
    def run(ops: CandidateOps) -> None:
        ops.lock()
        try:
            ops.edit_candidate(config)
        except BaseException:
            _release(ops)
            raise

    return run


def _release(ops: CandidateOps) -> None:
    """Discard and unlock, best effort: the session may already be gone."""
    for step in (ops.discard_changes, ops.unlock):
        try:
            step()
        except ControllerError as error:
            log.debug("release: %s", error)


def _commit(ops: CandidateOps) -> None:
    try:
        ops.commit()
    except BaseException:
        _release(ops)
        raise
    _unlock(ops)


def _unlock(ops: CandidateOps) -> None:
    """After a commit the candidate equals running: only the lock is left to give back."""
    try:
        ops.unlock()
    except ControllerError as error:
        log.debug("unlock: %s", error)


def _undo(config: str) -> Callable[[CandidateOps], None]:
    def run(ops: CandidateOps) -> None:
        ops.lock()
        try:
            ops.edit_candidate(config)
            ops.commit()
        except BaseException:
            _release(ops)
            raise
        _unlock(ops)

    return run


async def _each(
    run: Runner[None], work: Mapping[DeviceId, Callable[[CandidateOps], None]]
) -> dict[DeviceId, BaseException | None]:
    devices = list(work)
    results = await asyncio.gather(
        *(run(device, work[device]) for device in devices), return_exceptions=True
    )
    return {
        device: result if isinstance(result, BaseException) else None
        for device, result in zip(devices, results, strict=True)
    }


def _describe(failures: Mapping[DeviceId, BaseException], name: Callable[[DeviceId], str]) -> str:
    return "; ".join(f"{name(d)}: {e}" for d, e in failures.items())


async def apply_transaction(
    run: Runner[None],
    edits: Mapping[DeviceId, DeviceEdit],
    undo: Mapping[DeviceId, DeviceEdit],
    name: Callable[[DeviceId], str] = str,
) -> None:
    """Applies every edit or none; raises InstallError naming the failing node(s)."""
    if not edits:
        return
    prepared = await _each(run, {d: _prepare(e.config) for d, e in edits.items()})
    failures = {d: e for d, e in prepared.items() if e is not None}
    if failures:
        await _each(run, {d: _release for d, e in prepared.items() if e is None})
        raise InstallError(f"nothing changed; {_describe(failures, name)}")
    committed = await _each(run, {d: _commit for d in edits})
    failures = {d: e for d, e in committed.items() if e is not None}
    if not failures:
        return
    done = [d for d, e in committed.items() if e is None]
    reverted = await _each(run, {d: _undo(undo[d].config) for d in done if d in undo})
    stuck = {d: e for d, e in reverted.items() if e is not None}
    if stuck:
        raise InstallError(
            f"commit failed ({_describe(failures, name)}) and undo failed too "
            f"({_describe(stuck, name)}): those nodes are repaired when they reconnect"
        )
    raise InstallError(f"commit failed, every node rolled back; {_describe(failures, name)}")
