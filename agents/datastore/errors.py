"""The datastore's own errors: one exception holding items of a closed set of kinds."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """Why the datastore refused something; a front end maps each kind to its own protocol."""

    INVALID_ARGUMENT = "invalid-argument"  # the request itself: e.g. a change to operational
    BAD_OPERATION = "bad-operation"  # an edit names an operation the engine does not know
    MISSING_KEY = "missing-key"  # an edited list entry lacks one of its keys
    UNKNOWN_ELEMENT = "unknown-element"  # a node the schema does not have there
    UNKNOWN_NAMESPACE = "unknown-namespace"  # a node in no namespace the schema serves
    DATA_EXISTS = "data-exists"  # create of data that is there
    DATA_MISSING = "data-missing"  # delete of data that is not; a mandatory node missing
    INVALID_VALUE = "invalid-value"  # data the schema refuses (type, range, pattern ...)
    OPERATION_FAILED = "operation-failed"  # a constraint failed, or state/storage unusable
    VETOED = "vetoed"  # the backend (change subscriber) refused the new running


@dataclass(frozen=True)
class ErrorItem:
    """One problem: what kind, what it says, and where.

    `path` locates the data node (libyang style, list keys as predicates); `app_tag` is the
    model's or the datastore's name for the failed rule; `element`, `namespace` and
    `attribute` name the offending node, its namespace and the offending attribute.
    """

    kind: ErrorKind
    message: str
    path: str | None = None
    app_tag: str | None = None
    element: str | None = None
    namespace: str | None = None
    attribute: str | None = None


class DatastoreError(Exception):
    """Anything the datastore refuses; nothing changed. Holds one item or several (a
    validation or a continue-on-error edit may find more than one problem)."""

    def __init__(self, errors: Iterable[ErrorItem]) -> None:
        self.errors = tuple(errors)
        if not self.errors:
            raise ValueError("a DatastoreError needs at least one item")
        super().__init__("; ".join(f"{e.kind.value}: {e.message}" for e in self.errors))

    @classmethod
    def of(
        cls,
        kind: ErrorKind,
        message: str,
        *,
        path: str | None = None,
        app_tag: str | None = None,
        element: str | None = None,
        namespace: str | None = None,
        attribute: str | None = None,
    ) -> DatastoreError:
        """An error of one item."""
        return cls((ErrorItem(kind, message, path, app_tag, element, namespace, attribute),))
