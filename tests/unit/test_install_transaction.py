"""The all-or-none transaction of controller.intents.install, step by step, on fake nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from controller.errors import ControllerError, InstallError, RpcFailed
from controller.intents.compile import DeviceEdit, EditKind
from controller.intents.install import CandidateOps, Pending, apply_transaction


@dataclass(frozen=True)
class Done:
    error: ControllerError | None = None

    def wait(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class Node:
    """Records every request; refuses the ones listed in `refuse` (by operation name)."""

    name: str
    log: list[tuple[str, str]]
    refuse: set[str] = field(default_factory=set)
    running: str = "old"
    candidate: str | None = None
    locked: bool = False

    def _do(self, operation: str, effect: Callable[[], None]) -> Done:
        self.log.append((self.name, operation))
        if operation in self.refuse:
            return Done(RpcFailed(self.name, f"{operation} refused (injected)"))
        effect()
        return Done()

    def send_lock(self) -> Done:
        return self._do("lock", lambda: setattr(self, "locked", True))

    def send_edit(self, config: str) -> Done:
        return self._do("edit", lambda: setattr(self, "candidate", config))

    def send_commit_and_unlock(self) -> Done:
        def commit() -> None:
            self.running, self.candidate = self.candidate or self.running, None

        done = self._do("commit", commit)
        self._do("unlock", lambda: setattr(self, "locked", False))
        return done

    def send_discard(self) -> Done:
        return self._do("discard", lambda: setattr(self, "candidate", None))

    def send_discard_and_unlock(self) -> Done:
        done = self.send_discard()
        self._do("unlock", lambda: setattr(self, "locked", False))
        return done


class Network:
    def __init__(self, *names: str) -> None:
        self.log: list[tuple[str, str]] = []
        self.nodes = {name: Node(name, self.log) for name in names}
        self.away: set[str] = set()

    async def run(
        self, steps: Mapping[str, Callable[[CandidateOps], Pending]]
    ) -> dict[str, Exception | None]:
        outcome: dict[str, Exception | None] = {}
        sent: dict[str, Pending] = {}
        for device, step in steps.items():  # every request first, as DeviceService does
            if device in self.away:
                outcome[device] = ControllerError(f"{device} is away")
            else:
                sent[device] = step(self.nodes[device])
        for device, pending in sent.items():
            try:
                pending.wait()
                outcome[device] = None
            except ControllerError as error:
                outcome[device] = error
        return outcome

    def install(self) -> None:
        edits = {n: DeviceEdit(n, EditKind.INSTALL, "new", None) for n in self.nodes}
        undo = {n: DeviceEdit(n, EditKind.WITHDRAW, "old", None) for n in self.nodes}
        asyncio.run(apply_transaction(self.run, edits, undo))

    def operations(self, name: str) -> list[str]:
        return [operation for node, operation in self.log if node == name]


def test_each_step_reaches_every_node_before_the_next_starts() -> None:
    net = Network("a", "b", "c")
    net.install()
    steps = [operation for _, operation in net.log]
    assert steps == ["lock"] * 3 + ["edit"] * 3 + ["commit", "unlock"] * 3
    assert all(n.running == "new" and not n.locked for n in net.nodes.values())


@pytest.mark.parametrize("refused", ["lock", "edit"])
def test_a_refusal_before_commit_changes_nothing_anywhere(refused: str) -> None:
    net = Network("a", "b", "c")
    net.nodes["c"].refuse.add(refused)
    with pytest.raises(InstallError, match=r"nothing changed; c: .*injected"):
        net.install()
    assert not any(op == "commit" for _, op in net.log)
    assert all(n.running == "old" and n.candidate is None for n in net.nodes.values())
    assert not any(n.locked for n in net.nodes.values() if "lock" not in n.refuse)


def test_a_node_away_counts_as_a_refusal() -> None:
    net = Network("a", "b")
    net.away.add("b")
    with pytest.raises(InstallError, match="nothing changed; b: b is away"):
        net.install()
    assert net.operations("a") == ["lock", "discard", "unlock"]


def test_a_refused_commit_is_discarded_and_the_others_are_undone() -> None:
    net = Network("a", "b", "c")
    net.nodes["b"].refuse.add("commit")
    with pytest.raises(InstallError, match=r"every node rolled back; b: .*injected"):
        net.install()
    assert [n.running for n in net.nodes.values()] == ["old", "old", "old"]
    assert net.nodes["b"].candidate is None and not net.nodes["b"].locked
    assert net.operations("a")[-4:] == ["lock", "edit", "commit", "unlock"]


def test_each_undo_stands_alone_when_another_cannot_be_undone() -> None:
    net = Network("a", "b", "c")
    net.nodes["c"].refuse.add("commit")
    original_lock = net.nodes["a"].send_lock
    calls = {"a": 0}

    def lock_once() -> Done:  # a locks for the install, then refuses the undo's lock
        calls["a"] += 1
        return original_lock() if calls["a"] == 1 else Done(RpcFailed("a", "lock denied"))

    net.nodes["a"].send_lock = lock_once  # type: ignore[method-assign]
    with pytest.raises(InstallError, match=r"undo failed too \(a: .*lock denied\)"):
        net.install()
    assert net.nodes["a"].running == "new"  # stuck, repaired when it reconnects
    assert net.nodes["b"].running == "old"  # undone although a could not be
    assert net.nodes["c"].running == "old"
