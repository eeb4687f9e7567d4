"""NETCONF <rpc-error> values (RFC 6241 §4.3 and Appendix A), their XML form, and the one
mapping of the datastore's errors to them (`from_datastore`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from lxml import etree

from agents.datastore.errors import DatastoreError, ErrorItem, ErrorKind
from agents.datastore.tree import BASE_NS, base_element
from agents.netconf.error_path import error_path

__all__ = [
    "BASE_NS",
    "ErrorTag",
    "ErrorType",
    "NetconfError",
    "RpcError",
    "base_element",
    "from_datastore",
]


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
    """One <rpc-error>; `info` holds <error-info> children as (local name, text);
    `path_namespaces` the (prefix, namespace) pairs `path` uses, declared on <error-path>."""

    type: ErrorType
    tag: ErrorTag
    message: str
    path: str | None = None
    app_tag: str | None = None
    info: tuple[tuple[str, str], ...] = field(default=())
    path_namespaces: tuple[tuple[str, str], ...] = field(default=())
    # Whole elements (serialized) for <error-info>, e.g. RFC 8639's error yang-data.
    extra_info: tuple[bytes, ...] = field(default=())

    def to_element(self) -> etree._Element:
        error = base_element("rpc-error")
        _child(error, "error-type", self.type.value)
        _child(error, "error-tag", self.tag.value)
        _child(error, "error-severity", "error")
        if self.app_tag:
            _child(error, "error-app-tag", self.app_tag)
        if self.path:
            nsmap = cast("dict[str, str]", dict(self.path_namespaces))
            element = etree.SubElement(error, f"{{{BASE_NS}}}error-path", nsmap=nsmap)
            element.text = self.path
        message = _child(error, "error-message", self.message)
        message.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        if self.info or self.extra_info:
            info = _child(error, "error-info", None)
            for name, text in self.info:
                _child(info, name, text)
            for extra in self.extra_info:
                info.append(etree.fromstring(extra))
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
        path_namespaces: tuple[tuple[str, str], ...] = (),
    ) -> NetconfError:
        return cls(RpcError(type_, tag, message, path, app_tag, info, path_namespaces))


def _child(parent: etree._Element, name: str, text: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{BASE_NS}}}{name}")
    element.text = text
    return element


# Each datastore error kind as an <rpc-error>: what the client asked wrong is a protocol
# error; what the data or the node refuses is an application error (RFC 6241 Appendix A).
_FROM_KIND: dict[ErrorKind, tuple[ErrorType, ErrorTag]] = {
    ErrorKind.INVALID_ARGUMENT: (ErrorType.PROTOCOL, ErrorTag.INVALID_VALUE),
    ErrorKind.BAD_OPERATION: (ErrorType.PROTOCOL, ErrorTag.BAD_ATTRIBUTE),
    ErrorKind.MISSING_KEY: (ErrorType.PROTOCOL, ErrorTag.MISSING_ELEMENT),
    ErrorKind.UNKNOWN_ELEMENT: (ErrorType.APPLICATION, ErrorTag.UNKNOWN_ELEMENT),
    ErrorKind.UNKNOWN_NAMESPACE: (ErrorType.APPLICATION, ErrorTag.UNKNOWN_NAMESPACE),
    ErrorKind.DATA_EXISTS: (ErrorType.APPLICATION, ErrorTag.DATA_EXISTS),
    ErrorKind.DATA_MISSING: (ErrorType.APPLICATION, ErrorTag.DATA_MISSING),
    ErrorKind.INVALID_VALUE: (ErrorType.APPLICATION, ErrorTag.INVALID_VALUE),
    ErrorKind.OPERATION_FAILED: (ErrorType.APPLICATION, ErrorTag.OPERATION_FAILED),
    ErrorKind.VETOED: (ErrorType.APPLICATION, ErrorTag.OPERATION_FAILED),
}


def from_datastore(
    error: DatastoreError, modules: Mapping[str, str], default_module: str
) -> NetconfError:
    """The <rpc-error>s of a datastore error, one per item, in the same order.

    Paths become XPaths with bound prefixes (`error_path`): `modules` maps module name →
    namespace, `default_module` owns a path's first step when it names no module.
    """
    return NetconfError(*(_rpc_error(item, modules, default_module) for item in error.errors))


def _rpc_error(item: ErrorItem, modules: Mapping[str, str], default_module: str) -> RpcError:
    error_type, tag = _FROM_KIND[item.kind]
    info: list[tuple[str, str]] = []
    if item.attribute is not None:
        info.append(("bad-attribute", item.attribute))
    if item.element is not None:
        info.append(("bad-element", item.element))
    if item.namespace is not None:
        info.append(("bad-namespace", item.namespace))
    path = error_path(item.path, modules, default_module) if item.path else None
    return RpcError(
        error_type,
        tag,
        item.message,
        path.xpath if path is not None else None,
        item.app_tag,
        tuple(info),
        path.namespaces if path is not None else (),
    )
