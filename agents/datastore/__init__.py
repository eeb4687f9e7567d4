"""The agent's datastores (as in sysrepo): running, candidate, operational; no NETCONF inside.

Layout: `store` (the datastore: validate → veto → apply, persistence), `edit` (the edit
engine), `errors` (its own errors), `tree` (the lxml data trees), `persist` (the files).
"""

from agents.datastore.edit import Operation
from agents.datastore.errors import DatastoreError, ErrorItem, ErrorKind
from agents.datastore.persist import padded
from agents.datastore.store import (
    Datastore,
    DatastoreName,
    ErrorOption,
    NodeBackend,
    RestartRollback,
    TestOption,
)

__all__ = [
    "Datastore",
    "DatastoreError",
    "DatastoreName",
    "ErrorItem",
    "ErrorKind",
    "ErrorOption",
    "NodeBackend",
    "Operation",
    "RestartRollback",
    "TestOption",
    "padded",
]
