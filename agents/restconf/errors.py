"""RFC 8040 §7 errors: error-type, error-tag, the HTTP status of each tag, the error document
in JSON (RFC 7951) or XML, and the mapping of the datastore's errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lxml import etree

from agents.datastore.errors import DatastoreError, ErrorKind

RESTCONF_NS = "urn:ietf:params:xml:ns:yang:ietf-restconf"

# RFC 8040 §7: error-tag → status code (the first listed where several are allowed).
STATUS = {
    "in-use": 409,
    "invalid-value": 400,
    "too-big": 413,
    "missing-attribute": 400,
    "bad-attribute": 400,
    "unknown-attribute": 400,
    "bad-element": 400,
    "unknown-element": 400,
    "unknown-namespace": 400,
    "access-denied": 403,
    "lock-denied": 409,
    "resource-denied": 409,
    "rollback-failed": 500,
    "data-exists": 409,
    "data-missing": 409,
    "operation-not-supported": 405,
    "operation-failed": 500,
    "partial-operation": 500,
    "malformed-message": 400,
}


@dataclass(frozen=True)
class ErrorEntry:
    type: str  # transport, rpc, protocol, application
    tag: str
    message: str
    path: str | None = None


class RestconfError(Exception):
    """A request RESTCONF refuses: its status and the entries of the error document."""

    def __init__(self, status: int, *errors: ErrorEntry, allow: str | None = None) -> None:
        super().__init__("; ".join(f"{e.tag}: {e.message}" for e in errors))
        self.status = status
        self.errors = errors
        self.allow = allow  # the Allow header of a 405

    @classmethod
    def of(
        cls, type_: str, tag: str, message: str, *, path: str | None = None, status: int = 0
    ) -> RestconfError:
        return cls(status or STATUS[tag], ErrorEntry(type_, tag, message, path))


_FROM_KIND: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.INVALID_ARGUMENT: ("protocol", "invalid-value"),
    ErrorKind.BAD_OPERATION: ("protocol", "bad-attribute"),
    ErrorKind.MISSING_KEY: ("protocol", "missing-attribute"),
    ErrorKind.UNKNOWN_ELEMENT: ("application", "unknown-element"),
    ErrorKind.UNKNOWN_NAMESPACE: ("application", "unknown-namespace"),
    ErrorKind.DATA_EXISTS: ("application", "data-exists"),
    ErrorKind.DATA_MISSING: ("application", "data-missing"),
    ErrorKind.INVALID_VALUE: ("application", "invalid-value"),
    ErrorKind.OPERATION_FAILED: ("application", "operation-failed"),
    ErrorKind.VETOED: ("application", "operation-failed"),
}


def from_datastore(error: DatastoreError) -> RestconfError:
    """The datastore's refusal as a RESTCONF error (status of the first item's tag)."""
    entries = tuple(
        ErrorEntry(*_FROM_KIND[item.kind], item.message, item.path) for item in error.errors
    )
    status = STATUS[entries[0].tag]
    if entries[0].tag == "operation-failed" and error.errors[0].kind is ErrorKind.VETOED:
        status = 409  # the node refused a valid change: a conflict, not a server fault
    return RestconfError(status, *entries)


def error_document(error: RestconfError, xml: bool) -> bytes:
    """The `ietf-restconf:errors` document of `error`."""
    if xml:
        root = etree.Element(f"{{{RESTCONF_NS}}}errors", nsmap={None: RESTCONF_NS})  # type: ignore[dict-item]
        for entry in error.errors:
            item = etree.SubElement(root, f"{{{RESTCONF_NS}}}error")
            for name, value in _fields(entry):
                etree.SubElement(item, f"{{{RESTCONF_NS}}}{name}").text = value
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    document = {"ietf-restconf:errors": {"error": [dict(_fields(entry)) for entry in error.errors]}}
    return json.dumps(document).encode("utf-8")


def _fields(entry: ErrorEntry) -> list[tuple[str, str]]:
    fields = [("error-type", entry.type), ("error-tag", entry.tag)]
    if entry.path:
        fields.append(("error-path", entry.path))
    fields.append(("error-message", entry.message))
    return fields
