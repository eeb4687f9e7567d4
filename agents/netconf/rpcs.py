"""One handler per NETCONF operation (RFC 6241 §7 and §8.4, RFC 5277, RFC 6022 get-schema).

`dispatch` checks the <rpc> envelope, finds the handler by (namespace, name) in a fixed
table and turns every failure into <rpc-error>s: a handler never brings the session down.
The datastore's own errors become <rpc-error>s here, through `errors.from_datastore`.
Handlers see the session as a `SessionHandle`, so this module needs nothing of `session`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lxml import etree

from agents.datastore import DatastoreError, DatastoreName, ErrorOption, Operation, TestOption
from agents.netconf import audit, authz
from agents.netconf.confirmed import DEFAULT_TIMEOUT_S, CommitRequest
from agents.netconf.errors import (
    BASE_NS,
    ErrorTag,
    ErrorType,
    NetconfError,
    RpcError,
    base_element,
    from_datastore,
)
from agents.netconf.monitoring import (
    MONITORING_NS,
    may_select_monitoring,
    netconf_state,
    netconf_state_xml,
)
from agents.netconf.monitoring import keys_of as monitoring_keys_of
from agents.netconf.push.rpcs import HANDLERS as PUSH_HANDLERS
from agents.netconf.push.rpcs import PushHandler
from agents.netconf.state import CloseReason, SessionHandle
from agents.netconf.subscription import Subscription, XPathSelect
from agents.netconf.subtree import filter_subtree
from agents.netconf.xpath import check_xpath, select_by_filter, select_of

log = logging.getLogger(__name__)

NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
__all__ = ["MONITORING_NS", "NOTIFICATION_NS", "Outcome", "Reply", "dispatch", "error_reply"]


@dataclass(frozen=True)
class Reply:
    """What a handler answers: a <data>-like element (or its serialization), else <ok/>."""

    data: etree._Element | None = None
    close_after: bool = False
    serialized: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    """The reply and what RFC 6022 counts of it."""

    reply: bytes
    close_after: bool = False
    failed: bool = False  # the reply holds <rpc-error>s
    bad_rpc: bool = False  # no correct <rpc> (its envelope was wrong)


Handler = Callable[[SessionHandle, etree._Element], Reply]


def dispatch(session: SessionHandle, rpc: etree._Element) -> Outcome:
    try:
        operation = _check_envelope(rpc)
    except NetconfError as error:
        return Outcome(error_reply(rpc, error.errors), failed=True, bad_rpc=True)
    outcome = _dispatch(session, rpc, operation)
    if audit.audited(operation):
        errors = _errors_in(outcome)
        audit.record(session, operation, errors)
    return outcome


def _errors_in(outcome: Outcome) -> tuple[RpcError, ...]:
    """The <rpc-error>s of a reply, for the audit (only failed replies are parsed)."""
    if not outcome.failed:
        return ()
    reply = etree.fromstring(outcome.reply)
    errors = []
    for element in reply.iterfind(f"{{{BASE_NS}}}rpc-error"):
        tag_text = element.findtext(f"{{{BASE_NS}}}error-tag") or "operation-failed"
        type_text = element.findtext(f"{{{BASE_NS}}}error-type") or "application"
        message = element.findtext(f"{{{BASE_NS}}}error-message") or ""
        errors.append(RpcError(ErrorType(type_text), ErrorTag(tag_text), message))
    return tuple(errors)


def _dispatch(session: SessionHandle, rpc: etree._Element, operation: etree._Element) -> Outcome:
    try:
        handler = _HANDLERS.get(operation.tag)
        if handler is None:
            namespace = etree.QName(operation).namespace
            if namespace not in (BASE_NS, NOTIFICATION_NS, MONITORING_NS):
                raise NetconfError.of(
                    ErrorType.PROTOCOL,
                    ErrorTag.UNKNOWN_NAMESPACE,
                    f"unknown namespace {namespace!r}",
                    info=(
                        ("bad-element", etree.QName(operation).localname),
                        ("bad-namespace", namespace or ""),
                    ),
                )
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.OPERATION_NOT_SUPPORTED,
                f"operation {etree.QName(operation).localname!r} is not supported",
            )
        authz.check_exec(session, operation)
        result = handler(session, operation)
    except NetconfError as error:
        return Outcome(error_reply(rpc, error.errors), failed=True)
    except DatastoreError as error:
        agent = session.agent
        converted = from_datastore(error, agent.module_namespaces, agent.default_module)
        return Outcome(error_reply(rpc, converted.errors), failed=True)
    except Exception:  # a bug in one operation must not end the server or the session
        log.exception("session %d: operation failed", session.session_id)
        internal = RpcError(ErrorType.APPLICATION, ErrorTag.OPERATION_FAILED, "internal error")
        return Outcome(error_reply(rpc, (internal,)), failed=True)
    reply = reply_element(rpc)
    if result.serialized is not None:
        # Splice the ready-made content into "<rpc-reply ...></rpc-reply>".
        reply.text = ""
        envelope = etree.tostring(reply)
        head = envelope[: -len(b"</rpc-reply>")]
        return Outcome(head + result.serialized + b"</rpc-reply>", result.close_after)
    if result.data is None:
        etree.SubElement(reply, f"{{{BASE_NS}}}ok")
    else:
        reply.append(result.data)
    return Outcome(etree.tostring(reply), result.close_after)


def error_reply(rpc: etree._Element | None, errors: Sequence[RpcError]) -> bytes:
    reply = reply_element(rpc)
    for error in errors:
        reply.append(error.to_element())
    return etree.tostring(reply)


def reply_element(rpc: etree._Element | None) -> etree._Element:
    """An empty <rpc-reply> carrying every attribute of the <rpc> (RFC 6241 §4.2)."""
    reply = base_element("rpc-reply")
    if rpc is not None and rpc.tag == f"{{{BASE_NS}}}rpc":
        for name, value in rpc.attrib.items():
            reply.set(name, value)
    return reply


def _check_envelope(rpc: etree._Element) -> etree._Element:
    qname = etree.QName(rpc)
    if qname.localname != "rpc":
        raise NetconfError.of(
            ErrorType.RPC,
            ErrorTag.UNKNOWN_ELEMENT,
            f"expected <rpc>, got <{qname.localname}>",
            info=(("bad-element", qname.localname),),
        )
    if qname.namespace != BASE_NS:
        raise NetconfError.of(
            ErrorType.RPC,
            ErrorTag.UNKNOWN_NAMESPACE,
            f"<rpc> must be in {BASE_NS}",
            info=(("bad-element", "rpc"), ("bad-namespace", qname.namespace or "")),
        )
    if rpc.get("message-id") is None:
        raise NetconfError.of(
            ErrorType.RPC,
            ErrorTag.MISSING_ATTRIBUTE,
            "<rpc> without message-id",
            info=(("bad-attribute", "message-id"), ("bad-element", "rpc")),
        )
    operations = _elements(rpc)
    if len(operations) != 1:
        raise NetconfError.of(
            ErrorType.RPC,
            ErrorTag.MISSING_ELEMENT if not operations else ErrorTag.BAD_ELEMENT,
            "an <rpc> holds exactly one operation",
            info=(("bad-element", "rpc"),),
        )
    return operations[0]


# ---- parameters ------------------------------------------------------------------------------


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _params(
    operation: etree._Element, allowed: Sequence[str], namespace: str = BASE_NS
) -> dict[str, etree._Element]:
    """The parameters of an operation by local name; unknown ones are unknown-element."""
    found: dict[str, etree._Element] = {}
    for child in _elements(operation):
        qname = etree.QName(child)
        if qname.namespace != namespace or qname.localname not in allowed:
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.UNKNOWN_ELEMENT,
                f"unexpected parameter <{qname.localname}>",
                info=(("bad-element", qname.localname),),
            )
        found[qname.localname] = child
    return found


def _required(params: dict[str, etree._Element], name: str) -> etree._Element:
    if name not in params:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.MISSING_ELEMENT,
            f"missing parameter <{name}>",
            info=(("bad-element", name),),
        )
    return params[name]


def _datastore(
    params: dict[str, etree._Element], name: str, allowed: Sequence[DatastoreName]
) -> DatastoreName | etree._Element:
    """<target>/<source>: one of `allowed`, or (for <source> only) an inline <config>."""
    choice = _elements(_required(params, name))
    if len(choice) == 1:
        qname = etree.QName(choice[0])
        if qname.namespace == BASE_NS:
            for datastore in allowed:
                if qname.localname == datastore.value:
                    return datastore
            if qname.localname == "config" and name == "source":
                return choice[0]
    raise NetconfError.of(
        ErrorType.PROTOCOL,
        ErrorTag.INVALID_VALUE,
        f"<{name}> must name one of: {', '.join(d.value for d in allowed)}",
        info=(("bad-element", name),),
    )


def _datastore_name(
    params: dict[str, etree._Element], name: str, allowed: Sequence[DatastoreName]
) -> DatastoreName:
    chosen = _datastore(params, name, allowed)
    if not isinstance(chosen, DatastoreName):
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            f"<{name}> must name a datastore here",
            info=(("bad-element", name),),
        )
    return chosen


def _filter_nodes(filter_element: etree._Element | None) -> list[etree._Element] | None:
    """The filter's nodes; None when there is no filter (everything is selected)."""
    if filter_element is None:
        return None
    kind = filter_element.get("type", "subtree")
    if kind != "subtree":
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.BAD_ATTRIBUTE,
            f"filter type {kind!r} is not supported (subtree or xpath)",
            info=(("bad-attribute", "type"), ("bad-element", "filter")),
        )
    return _elements(filter_element)


_Option = TypeVar("_Option", TestOption, ErrorOption)


def _enum_param(
    params: dict[str, etree._Element], name: str, kind: type[_Option], default: _Option
) -> _Option:
    if name not in params:
        return default
    text = (params[name].text or "").strip()
    for member in kind:
        if member.value == text:
            return member
    raise NetconfError.of(
        ErrorType.PROTOCOL,
        ErrorTag.INVALID_VALUE,
        f"invalid <{name}> {text!r}",
        info=(("bad-element", name),),
    )


def _check_not_locked(session: SessionHandle, *names: DatastoreName) -> None:
    for name in names:
        holder = session.agent.lock_holder(name)
        if holder is not None and holder != session.session_id:
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.IN_USE,
                f"{name.value} is locked by session {holder}",
                info=(("session-id", str(holder)),),
            )


def _data(roots: Sequence[etree._Element], namespace: str = BASE_NS) -> etree._Element:
    data = base_element("data", namespace)
    for root in roots:
        data.append(root)
    return data


def _selected(
    session: SessionHandle, wrapper: etree._Element, filter_element: etree._Element | None
) -> Reply:
    if filter_element is not None and filter_element.get("type") == "xpath":
        return _xpath_reply(session, wrapper, filter_element)
    nodes = _filter_nodes(filter_element)
    if nodes is None:
        return Reply(authz.prune_reply(session, wrapper))
    keys_of = session.agent.datastore.keys_of
    selected = _data(filter_subtree(_elements(wrapper), nodes, keys_of))
    return Reply(authz.prune_reply(session, selected))


def _xpath_reply(
    session: SessionHandle, wrapper: etree._Element, filter_element: etree._Element
) -> Reply:
    """Serialized as the XPath evaluation built it: appending the element to the reply
    would let lxml drop namespace declarations that identityref values need."""
    selected = select_by_filter(session.agent.datastore.schema, wrapper, filter_element)
    return Reply(serialized=etree.tostring(authz.prune_reply(session, selected)))


# ---- operations ------------------------------------------------------------------------------


def _get(session: SessionHandle, operation: etree._Element) -> Reply:
    """Running with state merged in, and beside it RFC 6022's /netconf-state."""
    params = _params(operation, ("filter",))
    agent = session.agent
    datastore = agent.datastore
    if "filter" not in params:
        if not authz.reads_everything(session):
            wrapper = datastore.operational()
            wrapper.append(netconf_state(agent))
            return Reply(authz.prune_reply(session, wrapper))
        state = netconf_state_xml(agent)
        return Reply(serialized=_append_to_data(datastore.operational_xml(), state))
    filter_element = params["filter"]
    if filter_element.get("type", "subtree") == "xpath":
        wrapper = datastore.operational()
        wrapper.append(netconf_state(agent))
        return _xpath_reply(session, wrapper, filter_element)
    nodes = _filter_nodes(filter_element)
    assert nodes is not None
    # Subtree filtering copies what it selects: the shared tree needs no copy of its own.
    roots = _elements(datastore.operational_view())
    if may_select_monitoring(nodes):
        roots.append(netconf_state(agent))
    selected = _data(filter_subtree(roots, nodes, _keys_of(session)))
    return Reply(authz.prune_reply(session, selected))


def _keys_of(session: SessionHandle) -> Callable[[etree._Element], tuple[str, ...]]:
    node_keys = session.agent.datastore.keys_of

    def keys_of(element: etree._Element) -> tuple[str, ...]:
        return monitoring_keys_of(element) or node_keys(element)

    return keys_of


def _append_to_data(data_xml: bytes, content: bytes) -> bytes:
    """`content` added as the last child of a serialized <data> element."""
    if data_xml.endswith(b"/>"):  # <data .../>: nothing inside yet
        return data_xml[:-2] + b">" + content + b"</data>"
    closing = data_xml.rindex(b"</")
    return data_xml[:closing] + content + data_xml[closing:]


def _get_config(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("source", "filter"))
    source = _datastore_name(params, "source", (DatastoreName.RUNNING, DatastoreName.CANDIDATE))
    wrapper = session.agent.datastore.config(source)
    return _selected(session, wrapper, params.get("filter"))


def _edit_config(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(
        operation,
        ("target", "default-operation", "test-option", "error-option", "config", "url"),
    )
    target = _datastore_name(params, "target", (DatastoreName.RUNNING, DatastoreName.CANDIDATE))
    if "url" in params:
        raise NetconfError.of(
            ErrorType.PROTOCOL, ErrorTag.OPERATION_NOT_SUPPORTED, ":url is not supported"
        )
    config = _required(params, "config")
    default = Operation.MERGE
    if "default-operation" in params:
        default = parse_default_operation((params["default-operation"].text or "").strip())
    test_option = _enum_param(params, "test-option", TestOption, TestOption.TEST_THEN_SET)
    error_option = _enum_param(params, "error-option", ErrorOption, ErrorOption.STOP_ON_ERROR)
    _check_not_locked(session, target)
    datastore = session.agent.datastore
    if session.agent.access is not None and not authz.permits_whole_edit(session, config):
        authz.check_edit(session, datastore.config(target), config, default.value)
    datastore.edit(target, config, default, test_option, error_option)
    return Reply()


def _copy_config(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("target", "source"))
    datastores = (DatastoreName.RUNNING, DatastoreName.CANDIDATE)
    target = _datastore_name(params, "target", datastores)
    source = _datastore(params, "source", datastores)
    if source is target:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            "source and target are the same datastore",
            info=(("bad-element", "source"),),
        )
    _check_not_locked(session, target)
    datastore = session.agent.datastore
    if session.agent.access is not None:
        source_tree = datastore.config(source) if isinstance(source, DatastoreName) else source
        authz.check_replace(session, datastore.config(target), source_tree)
    datastore.copy_config(target, source)
    return Reply()


def _delete_config(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("target",))
    _required(params, "target")
    # Only startup or a URL may be deleted (RFC 6241 §7.4); this agent has neither.
    raise NetconfError.of(
        ErrorType.PROTOCOL,
        ErrorTag.OPERATION_NOT_SUPPORTED,
        "delete-config needs :startup or :url, which this agent does not have",
    )


def _validate(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("source",))
    source = _datastore(params, "source", (DatastoreName.RUNNING, DatastoreName.CANDIDATE))
    session.agent.datastore.validate(source)
    return Reply()


def _commit(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("confirmed", "confirm-timeout", "persist", "persist-id"))
    confirmed = "confirmed" in params
    for only_confirmed in ("confirm-timeout", "persist"):
        if only_confirmed in params and not confirmed:
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.MISSING_ELEMENT,
                f"<{only_confirmed}> needs <confirmed/>",
                info=(("bad-element", "confirmed"),),
            )
    request = CommitRequest(
        confirmed=confirmed,
        timeout_s=_confirm_timeout(params),
        persist=_text_param(params, "persist"),
        persist_id=_text_param(params, "persist-id"),
    )
    _check_not_locked(session, DatastoreName.RUNNING, DatastoreName.CANDIDATE)
    session.agent.confirmed.commit(session.session_id, request, session.info.username or "-")
    return Reply()


def _cancel_commit(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("persist-id",))
    _check_not_locked(session, DatastoreName.RUNNING)
    session.agent.confirmed.cancel(
        session.session_id, _text_param(params, "persist-id"), session.info.username or "-"
    )
    return Reply()


def _confirm_timeout(params: dict[str, etree._Element]) -> int:
    """<confirm-timeout>: seconds, uint32 from 1 (RFC 6241 Appendix C), 600 if absent."""
    if "confirm-timeout" not in params:
        return DEFAULT_TIMEOUT_S
    text = (params["confirm-timeout"].text or "").strip()
    if not text.isdigit() or not 1 <= int(text) <= 2**32 - 1:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            f"confirm-timeout {text!r} is no number of seconds from 1 to 4294967295",
            info=(("bad-element", "confirm-timeout"),),
        )
    return int(text)


def parse_default_operation(text: str) -> Operation:
    """The value of <default-operation>: merge, replace or none."""
    if text not in (Operation.MERGE.value, Operation.REPLACE.value, Operation.NONE.value):
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            f"unknown default-operation {text!r}",
            info=(("bad-element", "default-operation"),),
        )
    return Operation(text)


def _text_param(params: dict[str, etree._Element], name: str) -> str | None:
    return params[name].text or "" if name in params else None


def _discard_changes(session: SessionHandle, operation: etree._Element) -> Reply:
    _params(operation, ())
    _check_not_locked(session, DatastoreName.CANDIDATE)
    session.agent.datastore.discard_changes()
    return Reply()


def _lock(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("target",))
    target = _datastore_name(params, "target", (DatastoreName.RUNNING, DatastoreName.CANDIDATE))
    holder = session.agent.lock_holder(target)
    candidate_dirty = (
        target is DatastoreName.CANDIDATE and session.agent.datastore.candidate_modified
    )
    if holder is None and candidate_dirty:
        holder = 0  # RFC 6241 §7.5: uncommitted changes not owned by a lock holder
    if holder is not None:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.LOCK_DENIED,
            f"{target.value} is locked by session {holder}"
            if holder
            else "the candidate holds uncommitted changes",
            info=(("session-id", str(holder)),),
        )
    session.agent.lock(target, session.session_id)
    return Reply()


def _unlock(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("target",))
    target = _datastore_name(params, "target", (DatastoreName.RUNNING, DatastoreName.CANDIDATE))
    if session.agent.lock_holder(target) != session.session_id:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.OPERATION_FAILED,
            f"this session holds no lock on {target.value}",
        )
    session.agent.unlock(target)
    return Reply()


def _close_session(session: SessionHandle, operation: etree._Element) -> Reply:
    _params(operation, ())
    return Reply(close_after=True)


def _kill_session(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("session-id",))
    text = (_required(params, "session-id").text or "").strip()
    victim = session.agent.sessions.get(int(text)) if text.isdigit() else None
    if victim is None or victim is session:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            f"no other session with id {text!r}",
            info=(("bad-element", "session-id"),),
        )
    victim.close(CloseReason.KILLED)
    return Reply()


def _create_subscription(session: SessionHandle, operation: etree._Element) -> Reply:
    params: dict[str, etree._Element] = {}
    for child in _elements(operation):
        qname = etree.QName(child)
        known = ("stream", "filter", "startTime", "stopTime")
        if qname.localname not in known or qname.namespace not in (NOTIFICATION_NS, BASE_NS):
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.UNKNOWN_ELEMENT,
                f"unexpected parameter <{qname.localname}>",
                info=(("bad-element", qname.localname),),
            )
        params[qname.localname] = child
    stream = (params["stream"].text or "").strip() if "stream" in params else "NETCONF"
    if stream != "NETCONF":
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.INVALID_VALUE,
            f"no stream {stream!r} (only NETCONF)",
            info=(("bad-element", "stream"),),
        )
    if "startTime" in params or "stopTime" in params:
        raise NetconfError.of(
            ErrorType.PROTOCOL, ErrorTag.OPERATION_FAILED, "replay is not supported"
        )
    if session.subscription is not None:
        raise NetconfError.of(
            ErrorType.PROTOCOL, ErrorTag.IN_USE, "this session already has a subscription"
        )
    push = session.agent.push
    if push is not None and push.has_subscriptions(session.session_id):
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.OPERATION_NOT_SUPPORTED,
            "this session has RFC 8639 subscriptions: a session holds either those or one "
            "RFC 5277 subscription (RFC 8640 §3)",
        )
    filter_element = params.get("filter")
    if filter_element is not None and filter_element.get("type") == "xpath":
        select = _xpath_select(session, filter_element)
        session.subscription = Subscription(None, select)
        return Reply()
    nodes = _filter_nodes(filter_element)
    session.subscription = Subscription(tuple(nodes) if nodes is not None else None)
    return Reply()


def _xpath_select(session: SessionHandle, filter_element: etree._Element) -> XPathSelect:
    """An XPath subscription filter, checked now so that a bad one is refused at once."""
    select = select_of(filter_element)
    check_xpath(session.agent.datastore.schema, select, filter_element.nsmap)
    return XPathSelect(select, tuple(filter_element.nsmap.items()))


def _get_schema(session: SessionHandle, operation: etree._Element) -> Reply:
    params = _params(operation, ("identifier", "version", "format"), MONITORING_NS)
    identifier = (_required(params, "identifier").text or "").strip()
    version = (params["version"].text or "").strip() if "version" in params else None
    schema_format = (params["format"].text or "").strip() if "format" in params else "yang"
    if schema_format.rpartition(":")[2] != "yang":  # "yang" or a prefixed "ncm:yang"
        raise NetconfError.of(
            ErrorType.APPLICATION,
            ErrorTag.INVALID_VALUE,
            f"format {schema_format!r} is not available (only yang)",
            info=(("bad-element", "format"),),
        )
    matches = sorted(
        (revision, text)
        for (name, revision), text in session.agent.module_texts.items()
        if name == identifier and (version is None or version == revision)
    )
    if not matches:
        raise NetconfError.of(
            ErrorType.APPLICATION,
            ErrorTag.INVALID_VALUE,
            f"no schema {identifier!r}" + (f" revision {version}" if version else ""),
            info=(("bad-element", "identifier"),),
        )
    data = base_element("data", MONITORING_NS)
    data.text = matches[-1][1]
    return Reply(data)


_HANDLERS: dict[str, Handler] = {
    f"{{{BASE_NS}}}get": _get,
    f"{{{BASE_NS}}}get-config": _get_config,
    f"{{{BASE_NS}}}edit-config": _edit_config,
    f"{{{BASE_NS}}}copy-config": _copy_config,
    f"{{{BASE_NS}}}delete-config": _delete_config,
    f"{{{BASE_NS}}}validate": _validate,
    f"{{{BASE_NS}}}commit": _commit,
    f"{{{BASE_NS}}}cancel-commit": _cancel_commit,
    f"{{{BASE_NS}}}discard-changes": _discard_changes,
    f"{{{BASE_NS}}}lock": _lock,
    f"{{{BASE_NS}}}unlock": _unlock,
    f"{{{BASE_NS}}}close-session": _close_session,
    f"{{{BASE_NS}}}kill-session": _kill_session,
    f"{{{NOTIFICATION_NS}}}create-subscription": _create_subscription,
    f"{{{MONITORING_NS}}}get-schema": _get_schema,
}


def _replying(handler: PushHandler) -> Handler:
    def run(session: SessionHandle, operation: etree._Element) -> Reply:
        return Reply(handler(session, operation))

    return run


_HANDLERS.update({tag: _replying(handler) for tag, handler in PUSH_HANDLERS.items()})
