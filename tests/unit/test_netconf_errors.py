"""The NETCONF front end turns the datastore's errors into RFC 6241 <rpc-error>s."""

from __future__ import annotations

from lxml import etree

from agents.datastore import DatastoreError, ErrorItem, ErrorKind
from agents.netconf.error_path import ErrorPath, error_path
from agents.netconf.errors import BASE_NS, ErrorTag, ErrorType, NetconfError, RpcError
from agents.netconf.errors import from_datastore as convert

NODE_NS = "urn:etsi:qkd:yang:etsi-qkd-node"
EXT_NS = "urn:qkdsdn:yang:qkdsdn-node"
MODULES = {"etsi-qkd-sdn-node": NODE_NS, "qkdsdn-node": EXT_NS}


def from_datastore(error: DatastoreError) -> NetconfError:
    return convert(error, MODULES, "etsi-qkd-sdn-node")


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
            "/etsi-qkd-sdn-node:qkd_node/etsi-qkd-sdn-node:x",
            None,
            (("bad-element", "x"), ("bad-namespace", "urn:elsewhere")),
            (("etsi-qkd-sdn-node", NODE_NS),),
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


def test_a_libyang_path_becomes_an_xpath_with_every_step_prefixed() -> None:
    path = "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link[qkdl_id='a/b]c']/virt_bandwidth"
    assert error_path(path, MODULES, "etsi-qkd-sdn-node") == ErrorPath(
        "/etsi-qkd-sdn-node:qkd_node/etsi-qkd-sdn-node:qkd_links"
        "/etsi-qkd-sdn-node:qkd_link[etsi-qkd-sdn-node:qkdl_id='a/b]c']"
        "/etsi-qkd-sdn-node:virt_bandwidth",
        (("etsi-qkd-sdn-node", NODE_NS),),
    )


def test_an_augment_step_keeps_its_own_module_and_its_children_follow_it() -> None:
    path = "/etsi-qkd-sdn-node:qkd_node/qkdsdn-node:key_manager/relay_address"
    found = error_path(path, MODULES, "etsi-qkd-sdn-node")
    assert found is not None
    assert found.xpath == (
        "/etsi-qkd-sdn-node:qkd_node/qkdsdn-node:key_manager/qkdsdn-node:relay_address"
    )
    assert found.namespaces == (("etsi-qkd-sdn-node", NODE_NS), ("qkdsdn-node", EXT_NS))


def test_a_path_of_an_unknown_module_or_no_path_at_all_is_left_out() -> None:
    assert error_path("/other:thing", MODULES, "etsi-qkd-sdn-node") is None
    assert error_path("qkd_node", MODULES, "etsi-qkd-sdn-node") is None
    assert error_path("/", MODULES, "etsi-qkd-sdn-node") == ErrorPath("/", ())


def test_the_error_path_on_the_wire_resolves_with_the_prefixes_declared_on_it() -> None:
    (error,) = from_datastore(
        DatastoreError.of(
            ErrorKind.INVALID_VALUE, "bad", path="/qkd_node/qkd_links/qkd_link[qkdl_id='L1']"
        )
    ).errors
    element = error.to_element()
    path_element = element.find(f"{{{BASE_NS}}}error-path")
    assert path_element is not None
    reply = etree.fromstring(
        f'<data xmlns="{NODE_NS}"><qkd_node><qkd_links><qkd_link><qkdl_id>L1</qkdl_id>'
        "</qkd_link></qkd_links></qkd_node></data>"
    )
    # Evaluated as a client would: with the prefixes in scope of <error-path>, from the root.
    nsmap = {k: v for k, v in path_element.nsmap.items() if k is not None}
    found = reply.xpath("." + (path_element.text or ""), namespaces=nsmap)
    assert [etree.QName(node).localname for node in found] == ["qkd_link"]
