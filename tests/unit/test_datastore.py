"""Datastore: validate → veto → apply; a failed step changes nothing; persistence."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from agents.datastore import (
    Datastore,
    DatastoreError,
    DatastoreName,
    ErrorItem,
    ErrorKind,
    ErrorOption,
    Operation,
)
from agents.datastore import (
    TestOption as EditTest,
)
from agents.datastore.tree import BASE_NS
from agents.netconf.subtree import filter_subtree
from yang.schema import InvalidDataError, Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
NODE_ID = "11111111-1111-4111-8111-111111111111"
LINK_A = "22222222-2222-4222-8222-222222222222"
LINK_B = "33333333-3333-4333-8333-333333333333"
INITIAL = f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>'
ROOT = "etsi-qkd-sdn-node:qkd_node"


class Backend:
    def __init__(self) -> None:
        self.veto_reason: str | None = None
        self.applied: list[dict[str, Any]] = []
        self.fail_apply = False
        self.state: dict[str, Any] = {ROOT: {"qkdn_status": "etsi-qkd-node-types:OPERATING"}}

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return self.veto_reason

    def apply(self, new_running: dict[str, Any]) -> None:
        self.applied.append(new_running)
        if self.fail_apply:
            raise RuntimeError("subscriber bug")

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.state)


def _config(body: str) -> etree._Element:
    return etree.fromstring(
        f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}" xmlns:t="{TYPES_NS}">'
        f'<qkd_node xmlns="{NS}">{body}</qkd_node></config>'
    )


def _link(link_id: str, bandwidth: str = "100", operation: str = "") -> str:
    attribute = f' nc:operation="{operation}"' if operation else ""
    return (
        f"<qkd_links><qkd_link{attribute}><qkdl_id>{link_id}</qkdl_id>"
        f"<qkdl_type>t:VIRT</qkdl_type><virt_bandwidth>{bandwidth}</virt_bandwidth>"
        "</qkd_link></qkd_links>"
    )


def _store(tmp_path: Path, backend: Backend | None = None) -> tuple[Datastore, Backend]:
    backend = backend or Backend()
    return Datastore(Schema.default(), backend, tmp_path / "running.xml", INITIAL), backend


def _snapshot(store: Datastore, path: Path) -> tuple[object, ...]:
    return (
        etree.tostring(store.config(DatastoreName.RUNNING), method="c14n"),
        store.running_json(),
        store.revision,
        path.read_bytes(),
    )


def _link_ids(store: Datastore, name: DatastoreName) -> list[str]:
    return _xpath(store.config(name), "//q:qkdl_id/text()")


def _xpath(tree: etree._Element, expression: str) -> list[str]:
    found = tree.xpath(expression, namespaces={"q": NS})
    assert isinstance(found, list)
    return [str(v) if not isinstance(v, etree._Element) else "element" for v in found]


def test_initial_running_is_persisted_and_reloaded_instead_of_the_initial(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    reloaded, _ = _store(tmp_path)
    assert _link_ids(reloaded, DatastoreName.RUNNING) == [LINK_A]
    assert list(tmp_path.iterdir()) == [tmp_path / "running.xml"]  # no temporary files left


def test_invalid_initial_or_persisted_running_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(DatastoreError):
        Datastore(Schema.default(), Backend(), None, f'<qkd_node xmlns="{NS}"/>')
    (tmp_path / "running.xml").write_text("<qkd_node")
    with pytest.raises(DatastoreError, match=r"running\.xml"):
        _store(tmp_path)


def test_valid_edit_bumps_revision_and_hands_json_to_the_backend(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    assert store.revision == 1
    links = backend.applied[-1][ROOT]["qkd_links"]["qkd_link"]
    assert links == [
        {"qkdl_id": LINK_A, "qkdl_type": "etsi-qkd-node-types:VIRT", "virt_bandwidth": 100}
    ]
    assert store.running_json() == backend.applied[-1]


def test_failed_validation_changes_nothing(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    before = _snapshot(store, tmp_path / "running.xml")
    with pytest.raises(DatastoreError) as caught:
        store.edit(DatastoreName.RUNNING, _config(_link(LINK_B, bandwidth="-5")))
    assert caught.value.errors[0].kind is ErrorKind.INVALID_VALUE
    with pytest.raises(DatastoreError) as caught:
        store.edit(
            DatastoreName.RUNNING, _config(f'<qkdn_id nc:operation="delete">{NODE_ID}</qkdn_id>')
        )
    assert caught.value.errors[0].kind is ErrorKind.DATA_MISSING  # mandatory qkdn_id
    assert _snapshot(store, tmp_path / "running.xml") == before
    assert len(backend.applied) == 1


def test_veto_changes_nothing(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    before = _snapshot(store, tmp_path / "running.xml")
    backend.veto_reason = "link budget exceeded"
    with pytest.raises(DatastoreError) as caught:
        store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    assert caught.value.errors[0].kind is ErrorKind.VETOED
    assert "link budget exceeded" in caught.value.errors[0].message
    assert _snapshot(store, tmp_path / "running.xml") == before
    assert backend.applied == []


def test_edit_that_changes_nothing_neither_bumps_revision_nor_calls_the_backend(
    tmp_path: Path,
) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    store.edit(DatastoreName.RUNNING, _config(""))
    assert store.revision == 1
    assert len(backend.applied) == 1


def test_running_json_is_a_copy(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.running_json()[ROOT]["qkdn_id"] = "changed"
    assert store.running_json()[ROOT]["qkdn_id"] == NODE_ID


def test_test_only_changes_nothing_but_still_validates(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    before = _snapshot(store, tmp_path / "running.xml")
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)), test_option=EditTest.TEST_ONLY)
    assert _snapshot(store, tmp_path / "running.xml") == before
    with pytest.raises(DatastoreError):
        store.edit(
            DatastoreName.RUNNING,
            _config(_link(LINK_A, bandwidth="x")),
            test_option=EditTest.TEST_ONLY,
        )
    assert backend.applied == []


def test_continue_on_error_applies_the_valid_part_and_reports_the_rest(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    with pytest.raises(DatastoreError) as caught:
        store.edit(
            DatastoreName.RUNNING,
            _config(_link(LINK_A, operation="create") + _link(LINK_B)),
            error_option=ErrorOption.CONTINUE_ON_ERROR,
        )
    assert [e.kind for e in caught.value.errors] == [ErrorKind.DATA_EXISTS]
    assert _link_ids(store, DatastoreName.RUNNING) == [LINK_A, LINK_B]


def test_rollback_on_error_applies_nothing(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    before = _snapshot(store, tmp_path / "running.xml")
    with pytest.raises(DatastoreError):
        store.edit(
            DatastoreName.RUNNING,
            _config(_link(LINK_B) + _link(LINK_A, operation="create")),
            error_option=ErrorOption.ROLLBACK_ON_ERROR,
        )
    assert _snapshot(store, tmp_path / "running.xml") == before


def test_candidate_commit_goes_through_veto_and_keeps_candidate_on_refusal(
    tmp_path: Path,
) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.CANDIDATE, _config(_link(LINK_A)))
    assert store.candidate_modified
    assert _link_ids(store, DatastoreName.RUNNING) == []
    backend.veto_reason = "not now"
    with pytest.raises(DatastoreError):
        store.commit()
    assert _link_ids(store, DatastoreName.RUNNING) == []
    assert _link_ids(store, DatastoreName.CANDIDATE) == [LINK_A]
    backend.veto_reason = None
    store.commit()
    assert _link_ids(store, DatastoreName.RUNNING) == [LINK_A]
    assert not store.candidate_modified
    assert store.revision == 1


def test_candidate_may_be_invalid_with_test_option_set_but_cannot_be_committed(
    tmp_path: Path,
) -> None:
    store, _ = _store(tmp_path)
    store.edit(
        DatastoreName.CANDIDATE,
        _config(f'<qkdn_id nc:operation="delete">{NODE_ID}</qkdn_id>'),
        test_option=EditTest.SET,
    )
    with pytest.raises(DatastoreError):
        store.validate(DatastoreName.CANDIDATE)
    with pytest.raises(DatastoreError):
        store.commit()
    store.discard_changes()
    store.validate(DatastoreName.CANDIDATE)
    assert store.revision == 0


def test_validate_of_inline_config(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.validate(_config(f"<qkdn_id>{NODE_ID}</qkdn_id>{_link(LINK_A)}"))
    with pytest.raises(DatastoreError):
        store.validate(_config(f"<qkdn_id>{NODE_ID}</qkdn_id>{_link(LINK_A, bandwidth='no')}"))
    with pytest.raises(DatastoreError):
        store.validate(_config(_link(LINK_A)))  # qkdn_id is mandatory


def test_operational_merges_state_and_a_bad_state_is_an_error(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    backend.state = {
        ROOT: {
            "qkdn_status": "etsi-qkd-node-types:OPERATING",
            "qkd_links": {"qkd_link": [{"qkdl_id": LINK_A, "qkdl_performance": {"skr": 7}}]},
        }
    }
    merged = store.operational()
    assert _xpath(merged, "//q:qkd_link/q:qkdl_performance/q:skr/text()") == ["7"]
    assert _xpath(merged, "//q:qkd_link/q:virt_bandwidth/text()") == ["100"]
    assert len(_xpath(merged, "//q:qkd_link")) == 1
    backend.state = {ROOT: {"qkdn_status": "not-an-identity"}}
    with pytest.raises(DatastoreError) as caught:
        store.operational()
    assert caught.value.errors[0].kind is ErrorKind.OPERATION_FAILED


def test_failing_apply_does_not_undo_the_change(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    backend.fail_apply = True
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    assert _link_ids(store, DatastoreName.RUNNING) == [LINK_A]
    assert store.revision == 1


def test_operational_datastore_is_read_only(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    with pytest.raises(DatastoreError):
        store.edit(DatastoreName.OPERATIONAL, _config(_link(LINK_A)), Operation.MERGE)


class SharedStateBackend(Backend):
    """Hands out its own state object every time (no copy)."""

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        return self.state


def test_operational_follows_state_changes_even_in_place(tmp_path: Path) -> None:
    store, backend = _store(tmp_path, SharedStateBackend())
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    link: dict[str, Any] = {"qkdl_id": LINK_A, "qkdl_performance": {"skr": 1}}
    backend.state = {ROOT: {"qkd_links": {"qkd_link": [link]}}}
    assert _xpath(store.operational(), "//q:skr/text()") == ["1"]
    link["qkdl_performance"]["skr"] = 2  # the backend mutates its own report
    assert _xpath(store.operational(), "//q:skr/text()") == ["2"]
    assert b"<skr>2</skr>" in store.operational_xml()
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_B)))
    assert len(_xpath(store.operational(), "//q:qkd_link")) == 2


# Out of schema order on purpose: the check must print it in schema order.
UNORDERED = (
    f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link><virt_bandwidth>7</virt_bandwidth>'
    f'<qkdl_type xmlns:t="{TYPES_NS}">t:VIRT</qkdl_type><qkdl_id>{LINK_A}</qkdl_id>'
    f"</qkd_link></qkd_links><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>"
)


def test_check_prints_what_canonical_xml_and_xml_to_json_print() -> None:
    schema = Schema.default()
    for xml in (INITIAL, UNORDERED):
        checked = schema.check_config_xml(xml)
        assert checked.xml == schema.canonical_xml(xml, True)
        assert json.loads(checked.json) == schema.xml_to_json(xml, True)
        assert schema.validate_config_xml(xml) == []


def test_check_reports_what_validation_reports() -> None:
    schema = Schema.default()
    missing_id = f'<qkd_node xmlns="{NS}"><qkdn_location_id>x</qkdn_location_id></qkd_node>'
    bad_value = UNORDERED.replace("<virt_bandwidth>7<", "<virt_bandwidth>-7<")
    for xml in (missing_id, bad_value, "<qkd_node", f'<other xmlns="urn:x">{NODE_ID}</other>'):
        expected = schema.validate_config_xml(xml)
        assert expected
        with pytest.raises(InvalidDataError) as caught:
            schema.check_config_xml(xml)
        assert list(caught.value.errors) == expected


def test_a_checked_candidate_spoiled_by_an_unchecked_edit_is_checked_again(
    tmp_path: Path,
) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.CANDIDATE, _config(_link(LINK_A)))
    store.validate(DatastoreName.CANDIDATE)
    store.edit(
        DatastoreName.CANDIDATE,
        _config(_link(LINK_B, bandwidth="not-a-number")),
        test_option=EditTest.SET,
    )
    with pytest.raises(DatastoreError):
        store.validate(DatastoreName.CANDIDATE)
    with pytest.raises(DatastoreError):
        store.commit()
    assert store.revision == 0 and backend.applied == []
    # A checked edit that repairs it makes it committable again.
    store.edit(DatastoreName.CANDIDATE, _config(_link(LINK_B, bandwidth="5")))
    store.commit()
    ids = store.config(DatastoreName.RUNNING).xpath("//q:qkdl_id/text()", namespaces={"q": NS})
    assert ids == [LINK_A, LINK_B]


def test_unchecked_candidate_is_checked_by_commit(tmp_path: Path) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.CANDIDATE, _config(_link(LINK_A)), test_option=EditTest.SET)
    store.commit()
    assert store.revision == 1
    assert backend.applied[-1] == store.running_json()


def test_persisted_file_is_running_in_schema_order(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    config = etree.fromstring(
        f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{UNORDERED}</config>'
    )
    store.edit(DatastoreName.RUNNING, config)
    persisted = (tmp_path / "running.xml").read_text(encoding="utf-8")
    assert persisted == etree.tostring(store.config(DatastoreName.RUNNING)[0], encoding="unicode")
    assert persisted.index("<qkdn_id>") < persisted.index("<qkd_links>")
    reloaded, _ = _store(tmp_path)
    assert reloaded.running_json() == store.running_json()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["running.xml"]


def test_state_of_an_entry_not_in_running_is_added_and_unusable_state_is_an_error(
    tmp_path: Path,
) -> None:
    store, backend = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A)))
    backend.state = {
        ROOT: {"qkd_links": {"qkd_link": [{"qkdl_id": LINK_B, "qkdl_performance": {"skr": 3}}]}}
    }
    merged = store.operational()
    assert _xpath(merged, "//q:qkd_link/q:qkdl_id/text()") == [LINK_A, LINK_B]
    assert _xpath(merged, "//q:qkd_link[q:qkdl_id='" + LINK_B + "']//q:skr/text()") == ["3"]
    backend.state = {ROOT: {"qkdn_status": object()}}  # not JSON at all
    with pytest.raises(DatastoreError) as caught:
        store.operational_xml()
    assert caught.value.errors[0].kind is ErrorKind.OPERATION_FAILED


def test_subtree_filtering_the_shared_operational_tree_leaves_it_whole(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.edit(DatastoreName.RUNNING, _config(_link(LINK_A) + _link(LINK_B)))
    before = etree.tostring(store.operational_view(), method="c14n")
    selector = etree.fromstring(
        f'<filter><qkd_node xmlns="{NS}"><qkd_links><qkd_link><qkdl_id>{LINK_B}</qkdl_id>'
        "</qkd_link></qkd_links></qkd_node></filter>"
    )
    selected = filter_subtree(list(store.operational_view()), list(selector), store.keys_of)
    assert _xpath(selected[0], "//q:qkdl_id/text()") == [LINK_B]
    selected[0].clear()  # a caller may change its copy
    assert store.operational_view() is store.operational_view()  # cached while unchanged
    assert etree.tostring(store.operational_view(), method="c14n") == before
    assert store.operational_xml() == etree.tostring(store.operational_view())


def test_a_datastore_error_says_each_item_and_needs_at_least_one() -> None:
    error = DatastoreError(
        [
            ErrorItem(ErrorKind.DATA_EXISTS, "create of data that already exists", "/a"),
            ErrorItem(ErrorKind.VETOED, "refused by the node: busy", app_tag="vetoed"),
        ]
    )
    assert str(error) == (
        "data-exists: create of data that already exists; vetoed: refused by the node: busy"
    )
    assert [e.path for e in error.errors] == ["/a", None]
    with pytest.raises(ValueError):
        DatastoreError([])
