"""The wire of dynamic subscriptions (RFC 8640): the RPCs' input read into values, and the
push and subscription state notifications written. Pure: elements in, values or bytes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from agents.netconf.errors import ErrorTag, ErrorType, NetconfError, RpcError
from agents.netconf.push.changes import Edit
from agents.netconf.push.model import (
    DATASTORE_NOT_SUBSCRIBABLE,
    DS_NS,
    ENCODING_UNSUPPORTED,
    ERROR_TAGS,
    NETCONF_STREAM,
    SN_NS,
    STREAM_UNAVAILABLE,
    YP_NS,
    ChangeType,
    DatastoreTarget,
    ErrorInfo,
    Identity,
    OnChange,
    Periodic,
    Selection,
    StreamTarget,
    SubscriptionError,
    Target,
    Trigger,
)
from agents.netconf.subscription import XPathSelect

NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
_UINT32_MAX = 2**32 - 1

_ESTABLISH = {
    SN_NS: ("stream", "stream-subtree-filter", "stream-xpath-filter", "encoding"),
    YP_NS: (
        "datastore",
        "datastore-subtree-filter",
        "datastore-xpath-filter",
        "periodic",
        "on-change",
    ),
}
_MODIFY = {
    SN_NS: ("id", "stream-subtree-filter", "stream-xpath-filter"),
    YP_NS: (
        "datastore",
        "datastore-subtree-filter",
        "datastore-xpath-filter",
        "periodic",
        "on-change",
    ),
}


# ---- reading -----------------------------------------------------------------------------


def parse_establish(operation: etree._Element) -> Target:
    """The target of an <establish-subscription>; NetconfError for malformed input,
    SubscriptionError for what is well-formed but not served (with the RFC identity)."""
    params = _params(operation, _ESTABLISH)
    if "encoding" in params:
        _check_encoding(params["encoding"])
    if "stream" in params:
        if "datastore" in params:
            raise _bad("stream and datastore are two targets: give one", "datastore")
        return StreamTarget(_stream(params))
    if "datastore" not in params:
        raise _missing("stream or datastore")
    _check_datastore(params["datastore"], ErrorInfo.ESTABLISH_DATASTORE)
    selection = _selection(params, "datastore")
    trigger = _trigger(params, None)
    if trigger is None:
        raise _missing("periodic or on-change")
    return DatastoreTarget(selection, trigger)


def parse_id(operation: etree._Element, namespace: str = SN_NS) -> int:
    """The <id> of a delete-, kill-, modify- or resync-subscription."""
    element = operation.find(f"{{{namespace}}}id")
    if element is None:
        raise _missing("id")
    return _uint32(element, "id")


def parse_modify(operation: etree._Element, old: Target) -> Target:
    """`old` with what a <modify-subscription> changes (absent parts stay as they were)."""
    params = _params(operation, _MODIFY)
    if isinstance(old, StreamTarget):
        if any(name in params for name in _MODIFY[YP_NS]):
            raise _bad("a stream subscription has no datastore parameters", "datastore")
        if "stream-subtree-filter" in params or "stream-xpath-filter" in params:
            return StreamTarget(_selection(params, "stream"))
        return old
    if any(name.startswith("stream") for name in params):
        raise _bad("a datastore subscription has no stream parameters", "stream")
    if "datastore" in params:
        _check_datastore(params["datastore"], ErrorInfo.MODIFY_DATASTORE)
    selection = old.selection
    if "datastore-subtree-filter" in params or "datastore-xpath-filter" in params:
        selection = _selection(params, "datastore")
    trigger = _trigger(params, old.trigger) or old.trigger
    return DatastoreTarget(selection, trigger)


def _params(
    operation: etree._Element, allowed: Mapping[str, tuple[str, ...]]
) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for child in operation:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.localname not in allowed.get(qname.namespace or "", ()):
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.UNKNOWN_ELEMENT,
                f"parameter <{qname.localname}> is not supported here",
                info=(("bad-element", qname.localname),),
            )
        if qname.localname in found:
            raise _bad(f"<{qname.localname}> given twice", qname.localname)
        found[qname.localname] = child
    return found


def _stream(params: dict[str, etree._Element]) -> Selection:
    stream = (params["stream"].text or "").strip()
    if stream != NETCONF_STREAM:
        raise SubscriptionError(
            STREAM_UNAVAILABLE,
            f"no event stream {stream!r}: this agent has {NETCONF_STREAM}",
            ErrorInfo.ESTABLISH_STREAM,
        )
    return _selection(params, "stream")


def _selection(params: dict[str, etree._Element], kind: str) -> Selection:
    subtree = params.get(f"{kind}-subtree-filter")
    xpath = params.get(f"{kind}-xpath-filter")
    if subtree is not None and xpath is not None:
        raise _bad("give a subtree filter or an XPath filter, not both", f"{kind}-xpath-filter")
    if subtree is not None:
        return Selection(subtree=tuple(c for c in subtree if isinstance(c.tag, str)))
    if xpath is not None:
        expression = (xpath.text or "").strip()
        if not expression:
            raise _bad("an empty XPath filter", f"{kind}-xpath-filter")
        return Selection(xpath=XPathSelect(expression, tuple(xpath.nsmap.items())))
    return Selection()


def _identity_value(element: etree._Element) -> tuple[str | None, str]:
    """An identityref's (namespace, name): prefix resolved in scope, none: (None, name)."""
    text = (element.text or "").strip()
    prefix, _, name = text.rpartition(":")
    if not prefix:
        return None, name
    return element.nsmap.get(prefix), name


def _check_datastore(element: etree._Element, info: ErrorInfo) -> None:
    namespace, name = _identity_value(element)
    if name != "operational" or namespace not in (DS_NS, None):
        raise SubscriptionError(
            DATASTORE_NOT_SUBSCRIBABLE,
            f"datastore {(element.text or '').strip()!r} cannot be subscribed to: "
            "this agent pushes ds:operational",
            info,
        )


def _check_encoding(element: etree._Element) -> None:
    namespace, name = _identity_value(element)
    if name != "encode-xml" or namespace not in (SN_NS, None):
        raise SubscriptionError(
            ENCODING_UNSUPPORTED,
            f"encoding {(element.text or '').strip()!r} is not supported: NETCONF carries "
            "sn:encode-xml",
            ErrorInfo.ESTABLISH_DATASTORE,
        )


def _trigger(params: dict[str, etree._Element], old: Trigger | None) -> Trigger | None:
    periodic, on_change = params.get("periodic"), params.get("on-change")
    if periodic is not None and on_change is not None:
        raise _bad("periodic and on-change exclude each other", "on-change")
    if periodic is not None:
        return _periodic(periodic, old if isinstance(old, Periodic) else None)
    if on_change is not None:
        return _on_change(on_change, old if isinstance(old, OnChange) else None)
    return None


def _periodic(element: etree._Element, old: Periodic | None) -> Periodic:
    values = _leaves(element, ("period", "anchor-time"))
    if "period" not in values:
        if old is None:
            raise _missing("period")
        period = old.period_cs
    else:
        period = _uint32(values["period"], "period")
    anchor = old.anchor if old is not None else None
    if "anchor-time" in values:
        anchor = _date_and_time(values["anchor-time"])
    return Periodic(period, anchor)


def _on_change(element: etree._Element, old: OnChange | None) -> OnChange:
    names = ("dampening-period", "sync-on-start", "excluded-change")
    base = old or OnChange()
    dampening, sync, excluded = base.dampening_cs, base.sync_on_start, set(base.excluded)
    seen_excluded = False
    for child in element:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace != YP_NS or qname.localname not in names:
            raise _unknown(qname.localname)
        text = (child.text or "").strip()
        if qname.localname == "dampening-period":
            dampening = _uint32(child, "dampening-period")
        elif qname.localname == "sync-on-start":
            if text not in ("true", "false"):
                raise _bad(f"sync-on-start {text!r} is not true or false", "sync-on-start")
            sync = text == "true"
        else:
            if not seen_excluded:
                excluded, seen_excluded = set(), True
            try:
                excluded.add(ChangeType(text))
            except ValueError:
                raise _bad(
                    f"excluded-change {text!r} is no change type", "excluded-change"
                ) from None
    return OnChange(dampening, sync, frozenset(excluded))


def _leaves(element: etree._Element, names: tuple[str, ...]) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace != YP_NS or qname.localname not in names:
            raise _unknown(qname.localname)
        found[qname.localname] = child
    return found


def _uint32(element: etree._Element, name: str) -> int:
    text = (element.text or "").strip()
    if not text.isdigit() or int(text) > _UINT32_MAX:
        raise _bad(f"{name} {text!r} is no number from 0 to {_UINT32_MAX}", name)
    return int(text)


def _date_and_time(element: etree._Element) -> datetime:
    text = (element.text or "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise _bad(f"anchor-time {text!r} is no date-and-time with a time zone", "anchor-time")
    return value


def _bad(message: str, element: str) -> NetconfError:
    return NetconfError.of(
        ErrorType.PROTOCOL, ErrorTag.INVALID_VALUE, message, info=(("bad-element", element),)
    )


def _missing(element: str) -> NetconfError:
    return NetconfError.of(
        ErrorType.PROTOCOL,
        ErrorTag.MISSING_ELEMENT,
        f"missing parameter <{element}>",
        info=(("bad-element", element.split(" ")[0]),),
    )


def _unknown(element: str) -> NetconfError:
    return NetconfError.of(
        ErrorType.PROTOCOL,
        ErrorTag.UNKNOWN_ELEMENT,
        f"parameter <{element}> is not supported here",
        info=(("bad-element", element),),
    )


# ---- writing -----------------------------------------------------------------------------


def event_time(now: datetime) -> str:
    return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


def notification(now: datetime, inner: bytes) -> bytes:
    """An RFC 5277 <notification> around one event."""
    return (
        (
            f'<notification xmlns="{NOTIFICATION_NS}"><eventTime>{event_time(now)}</eventTime>'
        ).encode()
        + inner
        + b"</notification>"
    )


def push_update(subscription_id: int, roots: Sequence[etree._Element]) -> bytes:
    """RFC 8641 push-update: the whole selection (each root serialized with the namespace
    declarations its identityref values need)."""
    contents = b"".join(etree.tostring(root) for root in roots)
    return (
        (f'<push-update xmlns="{YP_NS}"><id>{subscription_id}</id><datastore-contents>').encode()
        + contents
        + b"</datastore-contents></push-update>"
    )


def push_change_update(subscription_id: int, patch_id: str, edits: Sequence[Edit]) -> bytes:
    """RFC 8641 push-change-update: the edits as an RFC 8072 YANG Patch."""
    parts = [
        f'<push-change-update xmlns="{YP_NS}"><id>{subscription_id}</id>'
        f"<datastore-changes><yang-patch><patch-id>{escape(patch_id)}</patch-id>".encode()
    ]
    for number, edit in enumerate(edits, start=1):
        parts.append(
            f"<edit><edit-id>edit{number}</edit-id><operation>{edit.operation.value}"
            f"</operation><target>{escape(edit.target)}</target>".encode()
        )
        if edit.value is not None:
            parts.append(b"<value>" + etree.tostring(edit.value) + b"</value>")
        parts.append(b"</edit>")
    parts.append(b"</yang-patch></datastore-changes></push-change-update>")
    return b"".join(parts)


def _state_change(name: str, subscription_id: int, reason: Identity | None) -> bytes:
    body = f"<id>{subscription_id}</id>"
    declaration = ""
    if reason is not None:
        declaration = f' xmlns:r="{reason.namespace}"'
        body += f"<reason>r:{reason.name}</reason>"
    return f'<{name} xmlns="{SN_NS}"{declaration}>{body}</{name}>'.encode()


def subscription_terminated(subscription_id: int, reason: Identity) -> bytes:
    return _state_change("subscription-terminated", subscription_id, reason)


def subscription_suspended(subscription_id: int, reason: Identity) -> bytes:
    return _state_change("subscription-suspended", subscription_id, reason)


def subscription_resumed(subscription_id: int) -> bytes:
    return _state_change("subscription-resumed", subscription_id, None)


def establish_reply(subscription_id: int) -> etree._Element:
    """The output of establish-subscription: <id> (added to <rpc-reply>)."""
    nsmap: Any = {None: SN_NS}  # lxml's stubs reject the None key
    element = etree.Element(f"{{{SN_NS}}}id", nsmap=nsmap)
    element.text = str(subscription_id)
    return element


def error_of(error: SubscriptionError) -> NetconfError:
    """RFC 8640: the reason identity as error-app-tag, and the reason with the hints as the
    RFC's error yang-data (e.g. establish-subscription-datastore-error-info) in error-info."""
    namespace, container = error.info.value
    # Written as text: lxml drops a prefix declaration whose namespace is also the default
    # one in scope, and the identityref value needs its prefix.
    hints = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in error.hints)
    info = (
        f'<{container} xmlns="{namespace}" xmlns:r="{error.reason.namespace}">'
        f"<reason>r:{error.reason.name}</reason>{hints}</{container}>"
    )
    tag = ERROR_TAGS.get(error.reason, ErrorTag.OPERATION_FAILED)
    return NetconfError(
        RpcError(
            ErrorType.APPLICATION,
            tag,
            error.message,
            app_tag=str(error.reason),
            extra_info=(info.encode(),),
        )
    )
