"""The agent's datastores: RUNNING, CANDIDATE and OPERATIONAL (as in sysrepo).

Every change to running is two-phase: the edit is applied to a copy, the whole result is
validated against the YANG schema, the backend may veto it, and only then the copy becomes
running (persisted atomically, then handed to `backend.apply`). A failed edit, a failed
validation or a veto changes nothing and raises `DatastoreError`. The NETCONF server is only
a front end to this class: it knows nothing of NETCONF.

One libyang parse per change does validation, canonical order and JSON together
(`Schema.check_config_nodes`); a candidate validated by its edit is not validated again by
`validate` or `commit` (it cannot change in between without a new check). An edit of a
valid datastore validates only the modules whose top-level nodes it names: libyang
validates module by module, and the others are the valid ones of before (a module that
appears or disappears validates everything again).

Data is kept as lxml trees of a `<data>` wrapper (see `tree`) whose child is
`<qkd_node>`; the backend sees RFC 7951 JSON.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from lxml import etree

from agents.datastore import persist
from agents.datastore.edit import NodeKind, Operation, SchemaPath, Shape, apply_edit
from agents.datastore.errors import DatastoreError, ErrorItem, ErrorKind
from agents.datastore.tree import (
    BASE_NS,
    parse,
    parse_wrapped,
    serialize,
    wrap,
    wrap_children,
)
from yang.schema import CheckedNode, InvalidDataError, NodeInfo, Schema, ValidationError

log = logging.getLogger(__name__)


class DatastoreName(enum.Enum):
    RUNNING = "running"
    CANDIDATE = "candidate"
    OPERATIONAL = "operational"


class ErrorOption(enum.Enum):
    STOP_ON_ERROR = "stop-on-error"
    CONTINUE_ON_ERROR = "continue-on-error"
    ROLLBACK_ON_ERROR = "rollback-on-error"


class TestOption(enum.Enum):
    TEST_THEN_SET = "test-then-set"
    SET = "set"
    TEST_ONLY = "test-only"


class NodeBackend(Protocol):
    """What the emulated node does with configuration (the sysrepo change subscriber)."""

    def veto(self, new_running: dict[str, Any]) -> str | None:
        """A reason to refuse the new running config (RFC 7951 JSON), or None to accept.

        `apply` gets the very document `veto` accepted: keep it, never modify it.
        """

    def apply(self, new_running: dict[str, Any]) -> None:
        """Called after running changed; must not fail (the change is already made).

        veto, apply and operational run on the thread that uses the datastore (the agent's
        event loop): keep them quick.
        """

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        """RFC 7951 JSON of `qkd_node` with the state (ro) leaves to merge into operational.

        `running` is shared by every call until running changes: read it, never modify it.
        """


class _WithState:
    """A backend whose operational state also holds `source()`'s top-level nodes."""

    def __init__(self, backend: NodeBackend, source: Callable[[], dict[str, Any]]) -> None:
        self._backend = backend
        self._source = source

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return self._backend.veto(new_running)

    def apply(self, new_running: dict[str, Any]) -> None:
        self._backend.apply(new_running)

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return {**self._backend.operational(running), **self._source()}


@dataclass(frozen=True)
class _Merged:
    """Running merged with one state report, and its serialization."""

    revision: int
    state: dict[str, Any]
    tree: etree._Element
    xml: bytes


@dataclass(frozen=True)
class _Checked:
    """A valid configuration in the forms running keeps, node by top-level node."""

    nodes: tuple[CheckedNode, ...]  # schema order

    @functools.cached_property
    def xml(self) -> str:
        """The top-level nodes side by side (canonical, compact)."""
        return "".join(node.xml for node in self.nodes)

    @functools.cached_property
    def text(self) -> str:
        """What is persisted and compared: the one node, or the nodes in a <data> wrapper."""
        if len(self.nodes) == 1:
            return self.nodes[0].xml
        if not self.nodes:
            return f'<data xmlns="{BASE_NS}"/>'
        return f'<data xmlns="{BASE_NS}">{self.xml}</data>'

    @functools.cached_property
    def json_text(self) -> str:
        """RFC 7951 JSON of the whole configuration."""
        return "{" + ",".join(node.json for node in self.nodes) + "}"

    def tree(self) -> etree._Element:
        """A fresh <data> wrapper of it (lxml); each node declares its own namespaces."""
        return parse(f'<data xmlns="{BASE_NS}">{self.xml}</data>')

    def namespaces(self) -> set[str]:
        return {node.namespace for node in self.nodes}


@dataclass(frozen=True)
class RestartRollback:
    """A confirmed commit the agent undid as it started (it restarted before the
    confirmation), or failed to undo: who made it, from which session, and the outcome."""

    user: str  # "-" when the commit's maker was not recorded
    session_id: int  # 0 when not recorded
    ok: bool
    error: str = ""


class Datastore:
    """Running, candidate and operational data of one agent. Thread-safe."""

    def __init__(
        self,
        schema: Schema,
        backend: NodeBackend,
        persist_path: Path | None,
        initial_running_xml: str,
        durable: bool = True,
        backend_reads: frozenset[str] | None = None,
    ) -> None:
        """Running comes from `persist_path` if that file exists, else `initial_running_xml`;
        a persisted file that is unreadable or invalid raises `DatastoreError`.

        `durable`: each persisted running is written to a new file, fsynced and renamed over
        the old one (then the directory fsynced) before the change takes effect, so a commit
        survives a power loss; off, the file is rewritten in place (`persist.overwrite`),
        which survives a crash of this process but not of the machine.
        `backend_reads`: the RFC 7951 names ("module:node") of the top-level nodes the
        backend reads; `veto`, `apply` and `operational` are handed only those (None: all).
        The backend is not called here: read `running_json()` once the node is composed.
        """
        self._schema = schema
        self._backend = backend
        self._persist_path = persist_path
        self._durable = durable
        self._backend_reads = backend_reads
        self._lock = threading.RLock()
        self._shapes: dict[SchemaPath, Shape | None] = {}
        self._namespaces = frozenset(uri.partition("?")[0] for uri in schema.capabilities())
        self.revision = 0
        source = "initial running"
        xml = initial_running_xml
        if persist_path is not None and persist_path.exists():
            source = str(persist_path)
            try:
                xml = persist_path.read_text(encoding="utf-8")
            except OSError as error:
                raise DatastoreError.of(
                    ErrorKind.OPERATION_FAILED, f"cannot read {persist_path}: {error}"
                ) from error
        # A confirmed commit undone at this start, for the agent's audit log (taken once).
        self._restart_rollback: RestartRollback | None = None
        self._restart_rollback_failed: str | None = None  # why a saved one was not usable
        maker = self._read_rollback_owner()
        restored = self._read_rollback()
        if restored is not None:
            source, xml = restored
        try:
            checked = self._check(wrap(parse(xml)))
        except DatastoreError as error:
            raise DatastoreError.of(
                ErrorKind.INVALID_VALUE, f"{source} is not valid: {error}"
            ) from error
        self._running = checked
        self._running_text = checked.text
        self._merged: _Merged | None = None
        # Running as JSON for readers, decoded once per revision (a read arrives far more
        # often than a change); each top-level node's decoded value is kept while its text
        # stays the same (an edit of one module leaves the others' values as they were).
        self._state_input: tuple[int, dict[str, Any], dict[str, Any]] | None = None
        self._decoded: dict[str, tuple[str, Any]] = {}  # name -> (its JSON member, value)
        self._candidate: etree._Element | None = None  # None: candidate equals running
        # The candidate's check while it is known valid (None: not checked since its edit).
        self._candidate_checked: _Checked | None = None
        if persist_path is not None and source != str(persist_path):
            self._persist(checked.text)
        if restored is not None:
            self.drop_rollback()
            self._restart_rollback = RestartRollback(*maker, ok=True)
            log.warning("running restored from before an unconfirmed commit (%s)", source)
        elif self._restart_rollback_failed is not None:
            self._restart_rollback = RestartRollback(
                *maker, ok=False, error=self._restart_rollback_failed
            )
            self.drop_rollback()

    # ---- reading -------------------------------------------------------------------------

    def running_json(self) -> dict[str, Any]:
        """Running configuration (config only) as RFC 7951 JSON; a fresh copy."""
        with self._lock:
            text = self._running.json_text
        return dict(orjson.loads(text))

    def running_view(self) -> Mapping[str, Any]:
        """Running as RFC 7951 JSON, decoded once per revision and shared by every reader of
        that revision: read it, never change it (`running_json` gives a copy to change)."""
        with self._lock:
            return self._running_decoded()

    def _running_decoded(self) -> dict[str, Any]:
        state_input = self._state_input  # the caller holds the lock
        if state_input is None or state_input[0] != self.revision:
            decoded: dict[str, tuple[str, Any]] = {}
            for node in self._running.nodes:
                kept = self._decoded.get(node.name)
                if kept is None or kept[0] != node.json:
                    kept = (node.json, orjson.loads("{" + node.json + "}")[node.name])
                decoded[node.name] = kept
            self._decoded = decoded
            document = {name: kept[1] for name, kept in decoded.items()}
            state_input = (self.revision, document, self._backend_view(document))
            self._state_input = state_input
        return state_input[1]

    def _backend_decoded(self) -> dict[str, Any]:
        """`_running_decoded` as the backend reads it (the same object all the revision)."""
        self._running_decoded()  # the caller holds the lock
        assert self._state_input is not None
        return self._state_input[2]

    def config(self, name: DatastoreName) -> etree._Element:
        """A copy of the <data> wrapper of a datastore (operational: see `operational`)."""
        if name is DatastoreName.OPERATIONAL:
            return self.operational()
        with self._lock:
            if name is DatastoreName.CANDIDATE and self._candidate is not None:
                return copy.deepcopy(self._candidate)
            return self._running.tree()

    def operational(self) -> etree._Element:
        """Running with the backend's state data merged in (operational); a copy."""
        return copy.deepcopy(self._current_merge().tree)

    def operational_view(self) -> etree._Element:
        """`operational()` without the copy, for readers that copy what they keep (subtree
        filtering does). Shared with later callers: never modify it."""
        return self._current_merge().tree

    def operational_xml(self) -> bytes:
        """`operational()` serialized: the whole <data> element."""
        return self._current_merge().xml

    def _current_merge(self) -> _Merged:
        with self._lock:
            running = self._running
            running_text = self._running_text
            revision = self.revision
            decoded = self._backend_decoded()
        state = self._backend.operational(decoded)
        # State changes far slower than reads arrive: reuse the last merge while neither
        # running nor the state changed.
        cached = self._merged
        if cached is None or cached.revision != revision or cached.state != state:
            try:
                state_json = json.dumps(state) if state else ""
            except (TypeError, ValueError) as error:
                raise _state_unavailable(str(error)) from error
            tree = self._merge_state(running, running_text, state_json)
            kept = json.loads(state_json) if state_json else {}  # a copy the backend cannot change
            cached = _Merged(revision, kept, tree, etree.tostring(tree))
            self._merged = cached
        return cached

    def add_state_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """`source()` (RFC 7951 JSON of state leaves of top-level nodes other than the
        backend's, e.g. NACM's counters) is merged into operational at every read."""
        self._backend = _WithState(self._backend, source)

    def _backend_view(self, running: dict[str, Any]) -> dict[str, Any]:
        """What of a running document the backend reads (`backend_reads`)."""
        reads = self._backend_reads
        if reads is None:
            return running
        return {name: value for name, value in running.items() if name in reads}

    def _merge_state(self, running: _Checked, running_text: str, state_json: str) -> etree._Element:
        if not state_json:
            return running.tree()
        try:
            merged = self._schema.merge_state_xml(running_text, state_json)
        except InvalidDataError as error:
            raise _state_unavailable(str(error)) from error
        return parse_wrapped(merged)

    @property
    def schema(self) -> Schema:
        return self._schema

    @property
    def candidate_modified(self) -> bool:
        with self._lock:
            return self._candidate is not None

    # ---- changing --------------------------------------------------------------------------

    def edit(
        self,
        target: DatastoreName,
        config: etree._Element,
        default_operation: Operation = Operation.MERGE,
        test_option: TestOption = TestOption.TEST_THEN_SET,
        error_option: ErrorOption = ErrorOption.STOP_ON_ERROR,
    ) -> None:
        """Edit `target`: the children of `config` are data nodes, with `operation` attributes
        as RFC 6241 §7.2 defines them (see `edit`).

        Running is always validated (it must stay valid); the candidate skips validation
        with test-option `set`, so it may hold an intermediate state until commit.
        stop-on-error and rollback-on-error both leave the target untouched on an error;
        continue-on-error applies what it can and still reports the errors.
        """
        if target is DatastoreName.OPERATIONAL:
            raise DatastoreError.of(ErrorKind.INVALID_ARGUMENT, "operational state is read-only")
        with self._lock:
            checked_base: _Checked | None = self._running
            if target is DatastoreName.RUNNING or self._candidate is None:
                work = self._running.tree()
            else:
                work = copy.deepcopy(self._candidate)
                checked_base = self._candidate_checked
            collected: list[ErrorItem] | None = (
                [] if error_option is ErrorOption.CONTINUE_ON_ERROR else None
            )
            apply_edit(work, config, default_operation, self.shape_of, collected, self._namespaces)
            validate = target is DatastoreName.RUNNING or test_option is not TestOption.SET
            checked = self._check_edited(work, checked_base, config) if validate else None
            if test_option is TestOption.TEST_ONLY:
                return self._raise_collected(collected)
            if checked is not None and target is DatastoreName.RUNNING:
                self._replace_running(checked)
            else:
                self._candidate = work
                self._candidate_checked = checked
            self._raise_collected(collected)

    def validate(self, source: DatastoreName | etree._Element) -> None:
        """Validate a datastore or an inline config (an element whose children are data nodes)."""
        if source is DatastoreName.OPERATIONAL:
            raise DatastoreError.of(ErrorKind.INVALID_ARGUMENT, "cannot validate operational state")
        if not isinstance(source, DatastoreName):
            self._validate(wrap_children(source))
            return
        with self._lock:
            # Running is valid by construction: only a candidate not yet checked needs work.
            candidate = self._candidate if source is DatastoreName.CANDIDATE else None
            if candidate is not None and self._candidate_checked is None:
                self._candidate_checked = self._check(candidate)

    def commit(self) -> None:
        """Candidate becomes running through the same validate → veto → apply path."""
        with self._lock:
            if self._candidate is None:
                return
            checked = self._candidate_checked or self._check(self._candidate)
            self._replace_running(checked)
            self._candidate = None
            self._candidate_checked = None

    def discard_changes(self) -> None:
        with self._lock:
            self._candidate = None
            self._candidate_checked = None

    def save_rollback(self, previous: etree._Element) -> None:
        """Keep `previous` (a running <data> wrapper) on disk while a confirmed commit is
        pending: an agent that restarts before the confirming commit starts from it
        (RFC 6241 §8.4.1). Nothing to do without a persist path."""
        path = self._rollback_path()
        if path is not None:
            with self._lock:
                persist.replace(path, serialize(previous), durable=self._durable)

    def drop_rollback(self) -> None:
        """The pending confirmed commit was confirmed or rolled back."""
        path = self._rollback_path()
        if path is None:
            return
        owner = path.with_suffix(".owner.json")
        if not path.exists() and not owner.exists():
            return
        with self._lock:
            path.unlink(missing_ok=True)
            owner.unlink(missing_ok=True)
            if self._durable:
                persist.fsync_directory(path.parent)

    def note_rollback_owner(self, user: str, session_id: int) -> None:
        """Who made the pending confirmed commit, kept beside its saved configuration so that
        a rollback at the next start is audited under them. Nothing without a persist path."""
        path = self._rollback_path()
        if path is not None:
            text = json.dumps({"user": user, "session_id": session_id})
            with self._lock:
                persist.replace(path.with_suffix(".owner.json"), text, durable=self._durable)

    def take_restart_rollback(self) -> RestartRollback | None:
        """The confirmed commit undone (or not) as this datastore started; None after the
        first call, or when there was none."""
        with self._lock:
            taken, self._restart_rollback = self._restart_rollback, None
        return taken

    def copy_config(self, target: DatastoreName, source: DatastoreName | etree._Element) -> None:
        """Replace `target` whole by a datastore or an inline config element.

        Running is replaced through validate → veto → apply; the candidate is only
        validated (it becomes running at commit).
        """
        if target is DatastoreName.OPERATIONAL or source is DatastoreName.OPERATIONAL:
            raise DatastoreError.of(
                ErrorKind.INVALID_ARGUMENT, "operational state cannot be copied"
            )
        with self._lock:
            tree = (
                self.config(source) if isinstance(source, DatastoreName) else wrap_children(source)
            )
            checked = self._check(tree)
            if target is DatastoreName.RUNNING:
                self._replace_running(checked)
            else:
                self._candidate = tree
                self._candidate_checked = checked

    # ---- schema shapes ---------------------------------------------------------------------

    def shape_of(self, path: SchemaPath) -> Shape | None:
        """The kind and keys of the schema node at `path`; None if there is none."""
        if path not in self._shapes:
            info = self._schema.node_info([local for _, local in path])
            self._shapes[path] = _shape_from_info(info, path[-1][0])
        return self._shapes[path]

    def keys_of(self, element: etree._Element) -> tuple[str, ...]:
        """List keys of a data element (for subtree filters); empty for other nodes."""
        path: list[tuple[str, str]] = []
        node: etree._Element | None = element
        while node is not None and etree.QName(node).namespace != BASE_NS:
            qname = etree.QName(node)
            path.append((qname.namespace or "", qname.localname))
            node = node.getparent()
        shape = self.shape_of(tuple(reversed(path)))
        return shape.keys if shape is not None and shape.kind is NodeKind.LIST else ()

    # ---- internals -------------------------------------------------------------------------

    def _validate(self, tree: etree._Element) -> None:
        errors = self._schema.validate_config_xml(serialize(tree))
        if errors:
            raise _invalid(errors, "not valid")

    def _check(self, tree: etree._Element) -> _Checked:
        """Full validation of `tree`, and its canonical and JSON forms from the same parse."""
        try:
            return _Checked(self._schema.check_config_nodes(serialize(tree)))
        except InvalidDataError as error:
            raise _invalid(error.errors, str(error)) from error

    def _check_edited(
        self, work: etree._Element, base: _Checked | None, config: etree._Element
    ) -> _Checked:
        """Validation of `work`, the valid `base` (None: not known valid) edited by `config`:
        only the modules of the top-level nodes `config` names are checked again, when the
        edit left the same modules present; everything otherwise."""
        if base is None:
            return self._check(work)
        named = {etree.QName(node).namespace for node in config if isinstance(node.tag, str)}
        children = [child for child in work if isinstance(child.tag, str)]
        present = {etree.QName(child).namespace for child in children}
        if present != base.namespaces() or None in named:
            return self._check(work)
        edited = [child for child in children if etree.QName(child).namespace in named]
        if not edited:
            return base  # the edit named no module: nothing changed
        # lxml writes each child with the namespace declarations in scope (identityref
        # prefixes included).
        text = "".join(etree.tostring(child, encoding="unicode") for child in edited)
        try:
            fresh = self._schema.check_config_nodes(f'<data xmlns="{BASE_NS}">{text}</data>')
        except InvalidDataError as error:
            raise _invalid(error.errors, str(error)) from error
        nodes: list[CheckedNode] = []
        for node in base.nodes:
            if node.namespace not in named:
                nodes.append(node)
            elif node.namespace not in {kept.namespace for kept in nodes}:
                nodes.extend(new for new in fresh if new.namespace == node.namespace)
        return _Checked(tuple(nodes))

    def _replace_running(self, checked: _Checked) -> None:
        if checked.text == self._running_text:
            return  # nothing changed: no veto, no apply, same revision
        # One fresh document, decoded once, for the veto and then the apply of this change.
        document = self._backend_document(checked)
        reason = self._backend.veto(document)
        if reason is not None:
            raise DatastoreError.of(
                ErrorKind.VETOED, f"refused by the node: {reason}", app_tag="vetoed"
            )
        if self._persist_path is not None:
            self._persist(checked.text)
        self._running = checked
        self._running_text = checked.text
        self.revision += 1
        try:
            self._backend.apply(document)
        except Exception:  # the change is made; a failing subscriber must not undo it
            log.exception("backend failed to apply running revision %d", self.revision)

    def _backend_document(self, checked: _Checked) -> dict[str, Any]:
        """A fresh RFC 7951 document of what the backend reads of `checked`."""
        reads = self._backend_reads
        members = [n.json for n in checked.nodes if reads is None or n.name in reads]
        return dict(orjson.loads("{" + ",".join(members) + "}"))

    def _persist(self, text: str) -> None:
        assert self._persist_path is not None
        if self._durable:
            persist.replace(self._persist_path, text, durable=True)
        else:
            persist.overwrite(self._persist_path, text.encode("utf-8"))

    def _rollback_path(self) -> Path | None:
        if self._persist_path is None:
            return None
        return self._persist_path.with_suffix(".rollback.xml")

    def _read_rollback(self) -> tuple[str, str] | None:
        """(source, XML) of a configuration saved by `save_rollback` that was never dropped;
        an unreadable or invalid one is set aside (the persisted running is used)."""
        path = self._rollback_path()
        if path is None or not path.exists():
            return None
        try:
            xml = path.read_text(encoding="utf-8")
            self._check(wrap(parse(xml)))
        except (OSError, DatastoreError) as error:
            stale = path.with_suffix(".stale.xml")
            log.error("%s is not usable (%s); moved to %s", path, error, stale)
            path.replace(stale)
            self._restart_rollback_failed = f"{path.name} not usable, moved to {stale.name}"
            return None
        return str(path), xml

    def _read_rollback_owner(self) -> tuple[str, int]:
        """(user, session id) noted by `note_rollback_owner`; ("-", 0) when not known."""
        path = self._rollback_path()
        if path is None:
            return "-", 0
        try:
            data = json.loads(path.with_suffix(".owner.json").read_text(encoding="utf-8"))
            return str(data["user"]), int(data["session_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return "-", 0

    def _raise_collected(self, collected: list[ErrorItem] | None) -> None:
        if collected:
            raise DatastoreError(collected)


def _state_unavailable(problem: str) -> DatastoreError:
    log.error("backend state data is not valid: %s", problem)
    return DatastoreError.of(ErrorKind.OPERATION_FAILED, "node state is unavailable")


def _shape_from_info(info: NodeInfo | None, namespace: str) -> Shape | None:
    if info is None or info.namespace != namespace:
        return None
    return Shape(NodeKind(info.kind), info.keys)


_OPERATION_FAILED_TAGS = {
    "data-not-unique",
    "too-many-elements",
    "too-few-elements",
    "must-violation",
}
_DATA_MISSING_TAGS = {"instance-required", "missing-choice"}


def _invalid(errors: Sequence[ValidationError], summary: str) -> DatastoreError:
    """The validation errors as one DatastoreError (the summary if libyang named none)."""
    items = [_validation_error(e) for e in errors]
    return DatastoreError(items or [ErrorItem(ErrorKind.INVALID_VALUE, summary or "not valid")])


def _validation_error(error: ValidationError) -> ErrorItem:
    """The kind of a YANG validation failure, as RFC 7950 §15 sorts them."""
    if error.app_tag in _OPERATION_FAILED_TAGS:
        kind = ErrorKind.OPERATION_FAILED
    elif error.app_tag in _DATA_MISSING_TAGS or "mandatory" in error.message.lower():
        kind = ErrorKind.DATA_MISSING
    else:
        kind = ErrorKind.INVALID_VALUE
    return ErrorItem(kind, error.message, error.path or None, error.app_tag)
