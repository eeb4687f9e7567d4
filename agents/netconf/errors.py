"""NETCONF <rpc-error> values (RFC 6241 §4.3 and Appendix A) and their XML form."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import cast

from lxml import etree

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def base_element(local: str, namespace: str = BASE_NS) -> etree._Element:
    """An element that declares its namespace as the default one (no ns0: prefixes)."""
    nsmap = cast("dict[str, str]", {None: namespace})  # lxml-stubs do not allow the None key
    return etree.Element(f"{{{namespace}}}{local}", nsmap=nsmap)


class ErrorType(enum.Enum):
    TRANSPORT = "transport"
    RPC = "rpc"
    PROTOCOL = "protocol"
    APPLICATION = "application"


class ErrorTag(enum.Enum):
    IN_USE = "in-use"
    INVALID_VALUE = "invalid-value"
    TOO_BIG = "too-big"
    MISSING_ATTRIBUTE = "missing-attribute"
    BAD_ATTRIBUTE = "bad-attribute"
    UNKNOWN_ATTRIBUTE = "unknown-attribute"
    MISSING_ELEMENT = "missing-element"
    BAD_ELEMENT = "bad-element"
    UNKNOWN_ELEMENT = "unknown-element"
    UNKNOWN_NAMESPACE = "unknown-namespace"
    ACCESS_DENIED = "access-denied"
    LOCK_DENIED = "lock-denied"
    RESOURCE_DENIED = "resource-denied"
    ROLLBACK_FAILED = "rollback-failed"
    DATA_EXISTS = "data-exists"
    DATA_MISSING = "data-missing"
    OPERATION_NOT_SUPPORTED = "operation-not-supported"
    OPERATION_FAILED = "operation-failed"
    MALFORMED_MESSAGE = "malformed-message"


@dataclass(frozen=True)
class RpcError:
    """One <rpc-error>; `info` holds <error-info> children as (local name, text)."""

    type: ErrorType
    tag: ErrorTag
    message: str
    path: str | None = None
    app_tag: str | None = None
    info: tuple[tuple[str, str], ...] = field(default=())

    def to_element(self) -> etree._Element:
        error = base_element("rpc-error")
        _child(error, "error-type", self.type.value)
        _child(error, "error-tag", self.tag.value)
        _child(error, "error-severity", "error")
        if self.app_tag:
            _child(error, "error-app-tag", self.app_tag)
        if self.path:
            _child(error, "error-path", self.path)
        message = _child(error, "error-message", self.message)
        message.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        if self.info:
            info = _child(error, "error-info", None)
            for name, text in self.info:
                _child(info, name, text)
        return error


class NetconfError(Exception):
    """Raised by operation handlers; becomes one or more <rpc-error> in the <rpc-reply>."""

    def __init__(self, *errors: RpcError) -> None:
        super().__init__("; ".join(f"{e.tag.value}: {e.message}" for e in errors))
        self.errors = errors

    @classmethod
    def of(
        cls,
        type_: ErrorType,
        tag: ErrorTag,
        message: str,
        *,
        path: str | None = None,
        app_tag: str | None = None,
        info: tuple[tuple[str, str], ...] = (),
    ) -> NetconfError:
        return cls(RpcError(type_, tag, message, path, app_tag, info))


def _child(parent: etree._Element, name: str, text: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{BASE_NS}}}{name}")
    element.text = text
    return element
