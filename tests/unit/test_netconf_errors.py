"""The NETCONF front end turns the datastore's errors into RFC 6241 <rpc-error>s."""

from __future__ import annotations

from lxml import etree

from agents.datastore import DatastoreError, ErrorItem, ErrorKind
from agents.netconf.errors import BASE_NS, ErrorTag, ErrorType, RpcError, from_datastore

EXPECTED = {
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


def test_every_datastore_error_kind_becomes_its_error_type_and_tag() -> None:
    assert set(EXPECTED) == set(ErrorKind)
    for kind, (error_type, tag) in EXPECTED.items():
        (error,) = from_datastore(DatastoreError.of(kind, "why")).errors
        assert (error.type, error.tag, error.message) == (error_type, tag, "why")


def test_each_item_becomes_one_rpc_error_in_order_with_path_app_tag_and_error_info() -> None:
    error = DatastoreError(
        (
            ErrorItem(
                ErrorKind.UNKNOWN_NAMESPACE,
                "<x> is in no served namespace",
                path="/qkd_node/x",
                element="x",
                namespace="urn:elsewhere",
            ),
            ErrorItem(ErrorKind.VETOED, "refused by the node: no", app_tag="vetoed"),
            ErrorItem(ErrorKind.BAD_OPERATION, "unknown operation 'none'", attribute="operation"),
        )
    )
    assert from_datastore(error).errors == (
        RpcError(
            ErrorType.APPLICATION,
            ErrorTag.UNKNOWN_NAMESPACE,
            "<x> is in no served namespace",
            "/qkd_node/x",
            None,
            (("bad-element", "x"), ("bad-namespace", "urn:elsewhere")),
        ),
        RpcError(
            ErrorType.APPLICATION,
            ErrorTag.OPERATION_FAILED,
            "refused by the node: no",
            None,
            "vetoed",
        ),
        RpcError(
            ErrorType.PROTOCOL,
            ErrorTag.BAD_ATTRIBUTE,
            "unknown operation 'none'",
            info=(("bad-attribute", "operation"),),
        ),
    )


def test_a_vetoed_change_reads_as_operation_failed_on_the_wire() -> None:
    (error,) = from_datastore(
        DatastoreError.of(ErrorKind.VETOED, "refused by the node: busy", app_tag="vetoed")
    ).errors
    element = error.to_element()

    def text(name: str) -> str | None:
        return element.findtext(f"{{{BASE_NS}}}{name}")

    assert text("error-type") == "application"
    assert text("error-tag") == "operation-failed"
    assert text("error-app-tag") == "vetoed"
    assert text("error-message") == "refused by the node: busy"
    assert etree.QName(element).localname == "rpc-error"
