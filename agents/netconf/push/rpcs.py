"""The operations of RFC 8639 and RFC 8641 over NETCONF (RFC 8640): establish-, modify-,
delete-, kill- and resync-subscription. Each returns the content of its <rpc-reply>
(None: <ok/>); a SubscriptionError becomes the RFC's <rpc-error> here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from agents.netconf.errors import ErrorTag, ErrorType, NetconfError
from agents.netconf.push import messages
from agents.netconf.push.model import (
    FILTER_UNSUPPORTED,
    SN_NS,
    YP_NS,
    DatastoreTarget,
    ErrorInfo,
    SubscriptionError,
    Target,
)
from agents.netconf.push.publisher import Publisher
from agents.netconf.xpath import check_xpath

if TYPE_CHECKING:
    from agents.netconf.state import SessionHandle

PushHandler = Callable[["SessionHandle", etree._Element], etree._Element | None]


def _publisher(session: SessionHandle) -> Publisher:
    push = session.agent.push
    if not isinstance(push, Publisher):
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.OPERATION_NOT_SUPPORTED,
            "this server offers no dynamic subscriptions",
        )
    return push


def _check_filter(session: SessionHandle, target: Target, info: ErrorInfo) -> None:
    """A bad XPath is refused when subscribing (filter-unsupported, with the reason)."""
    xpath = target.selection.xpath
    if xpath is None:
        return
    try:
        check_xpath(session.agent.datastore.schema, xpath.expression, dict(xpath.nsmap))
    except NetconfError as error:
        message = error.errors[0].message
        raise SubscriptionError(
            FILTER_UNSUPPORTED, message, info, (("filter-failure-hint", message),)
        ) from None


def establish(session: SessionHandle, operation: etree._Element) -> etree._Element | None:
    push = _publisher(session)
    try:
        target = messages.parse_establish(operation)
        info = (
            ErrorInfo.ESTABLISH_DATASTORE
            if isinstance(target, DatastoreTarget)
            else ErrorInfo.ESTABLISH_STREAM
        )
        _check_filter(session, target, info)
        subscription = push.establish(session, target)
    except SubscriptionError as error:
        raise messages.error_of(error) from None
    return messages.establish_reply(subscription.id)


def modify(session: SessionHandle, operation: etree._Element) -> etree._Element | None:
    push = _publisher(session)
    try:
        subscription_id = messages.parse_id(operation)
        old = push.table.owned(session.session_id, subscription_id, ErrorInfo.MODIFY_DATASTORE)
        target = messages.parse_modify(operation, old.target)
        info = (
            ErrorInfo.MODIFY_DATASTORE
            if isinstance(target, DatastoreTarget)
            else ErrorInfo.MODIFY_STREAM
        )
        _check_filter(session, target, info)
        push.modify(session, subscription_id, target)
    except SubscriptionError as error:
        raise messages.error_of(error) from None
    return None


def delete(session: SessionHandle, operation: etree._Element) -> etree._Element | None:
    push = _publisher(session)
    try:
        push.delete(session, _only_id(operation, SN_NS))
    except SubscriptionError as error:
        raise messages.error_of(error) from None
    return None


def kill(session: SessionHandle, operation: etree._Element) -> etree._Element | None:
    """Any session's subscription (NACM: default-deny-all, an explicit permit opens it)."""
    push = _publisher(session)
    try:
        push.kill(_only_id(operation, SN_NS))
    except SubscriptionError as error:
        raise messages.error_of(error) from None
    return None


def resync(session: SessionHandle, operation: etree._Element) -> etree._Element | None:
    push = _publisher(session)
    try:
        push.resync(session, _only_id(operation, YP_NS))
    except SubscriptionError as error:
        raise messages.error_of(error) from None
    return None


def _only_id(operation: etree._Element, namespace: str) -> int:
    for child in operation:
        if isinstance(child.tag, str) and child.tag != f"{{{namespace}}}id":
            local = etree.QName(child).localname
            raise NetconfError.of(
                ErrorType.PROTOCOL,
                ErrorTag.UNKNOWN_ELEMENT,
                f"unexpected parameter <{local}>",
                info=(("bad-element", local),),
            )
    return messages.parse_id(operation, namespace)


HANDLERS: dict[str, PushHandler] = {
    f"{{{SN_NS}}}establish-subscription": establish,
    f"{{{SN_NS}}}modify-subscription": modify,
    f"{{{SN_NS}}}delete-subscription": delete,
    f"{{{SN_NS}}}kill-subscription": kill,
    f"{{{YP_NS}}}resync-subscription": resync,
}
