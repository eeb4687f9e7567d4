"""All nodes or none: one transaction of per-device edits over NETCONF candidates.

Each step goes to every node of the transaction at once (sent from one thread, then every
reply read), and a node moves to the next step only when the step succeeded everywhere:

1. lock the candidate;
2. edit it with validation (the edit's test-then-set makes the node validate the whole
   candidate and refuse an invalid edit, which saves a <validate> round trip per node).
   Any failure in 1 or 2: discard and unlock where locked; nothing changed.
3. commit and unlock, sent together. Agents veto at commit (the change reaches the node's key
   manager then), so a commit can fail after others succeeded: a refused candidate is
   discarded, and the nodes that did commit get the caller's undo edits committed, each on
   its own, so no partial state remains.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from controller.errors import InstallError
from controller.intents.compile import DeviceEdit
from controller.model import DeviceId

log = logging.getLogger(__name__)


class Pending(Protocol):
    """Requests sent to one device; `wait` reads the replies, raising the first failure."""

    def wait(self) -> None: ...


class CandidateOps(Protocol):
    """What a transaction needs of a device session (NetconfSession has it)."""

    def send_lock(self) -> Pending: ...
    def send_edit(self, config: str) -> Pending: ...  # validates the candidate too
    def send_commit_and_unlock(self) -> Pending: ...  # the lock goes even when refused
    def send_discard(self) -> Pending: ...
    def send_discard_and_unlock(self) -> Pending: ...


Step = Callable[[CandidateOps], Pending]
# Runs one step on several devices at once; the outcome per device (None: done).
StepRunner = Callable[[Mapping[DeviceId, Step]], Awaitable[Mapping[DeviceId, Exception | None]]]
Failures = dict[DeviceId, Exception]


def _lock(ops: CandidateOps) -> Pending:
    return ops.send_lock()


def _edit(config: str) -> Step:
    return lambda ops: ops.send_edit(config)


def _commit(ops: CandidateOps) -> Pending:
    return ops.send_commit_and_unlock()


def _discard(ops: CandidateOps) -> Pending:
    return ops.send_discard()


def _release(ops: CandidateOps) -> Pending:
    return ops.send_discard_and_unlock()


async def _run(run: StepRunner, steps: Mapping[DeviceId, Step]) -> Failures:
    if not steps:
        return {}
    outcome = await run(steps)
    return {device: error for device, error in outcome.items() if error is not None}


async def _best_effort(run: StepRunner, steps: Mapping[DeviceId, Step]) -> None:
    """Clean-up: a session that is already gone must not hide the original failure."""
    for device, error in (await _run(run, steps)).items():
        log.debug("clean-up on %s: %s", device, error)


async def _prepare(run: StepRunner, configs: Mapping[DeviceId, str]) -> Failures:
    """Steps 1 and 2 on every node, all or none: on any failure the locked nodes are
    released and the failures returned."""
    failures = await _run(run, {device: _lock for device in configs})
    locked = [device for device in configs if device not in failures]
    if not failures:
        failures = await _run(run, {device: _edit(configs[device]) for device in locked})
    if failures:
        await _best_effort(run, {device: _release for device in locked})
    return failures


async def _undo(run: StepRunner, configs: Mapping[DeviceId, str]) -> Failures:
    """Each node on its own: one that cannot be locked or edited does not stop the others."""
    failures = await _run(run, {device: _lock for device in configs})
    locked = [device for device in configs if device not in failures]
    refused = await _run(run, {device: _edit(configs[device]) for device in locked})
    await _best_effort(run, {device: _release for device in refused})
    failures |= refused
    failures |= await _run(run, {d: _commit for d in locked if d not in refused})
    return failures


def _describe(failures: Mapping[DeviceId, Exception], name: Callable[[DeviceId], str]) -> str:
    return "; ".join(f"{name(d)}: {e}" for d, e in failures.items())


async def apply_transaction(
    run: StepRunner,
    edits: Mapping[DeviceId, DeviceEdit],
    undo: Mapping[DeviceId, DeviceEdit],
    name: Callable[[DeviceId], str] = str,
) -> None:
    """Applies every edit or none; raises InstallError naming the failing node(s)."""
    if not edits:
        return
    failures = await _prepare(run, {device: edit.config for device, edit in edits.items()})
    if failures:
        raise InstallError(f"nothing changed; {_describe(failures, name)}")
    failures = await _run(run, {device: _commit for device in edits})
    if not failures:
        return
    # A refused candidate still holds the change; unlocked, nobody else can lock it.
    await _best_effort(run, {device: _discard for device in failures})
    done = {d: undo[d].config for d in edits if d not in failures and d in undo}
    stuck = await _undo(run, done)
    if stuck:
        raise InstallError(
            f"commit failed ({_describe(failures, name)}) and undo failed too "
            f"({_describe(stuck, name)}): those nodes are repaired when they reconnect"
        )
    raise InstallError(f"commit failed, every node rolled back; {_describe(failures, name)}")
