"""The agent's NETCONF server driven by ncclient over real SSH on 127.0.0.1."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.operations import RPCError
from ncclient.transport.errors import AuthenticationError

from agents.netconf.errors import BASE_NS
from tests.harness.netconf import (
    LINK_ID,
    NODE_ID,
    NS,
    TYPES_NS,
    FakeBackend,
    connect,
    running_agent,
    wait_until,
)

OTHER_LINK = "33333333-3333-4333-8333-333333333333"


def _config(body: str) -> str:
    return (
        f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}" xmlns:t="{TYPES_NS}">'
        f'<qkd_node xmlns="{NS}">{body}</qkd_node></config>'
    )


def _source(body: str) -> str:
    return f'<source xmlns="{BASE_NS}">{_config(body)}</source>'


def _virt_link(link_id: str, bandwidth: str = "1000", operation: str = "") -> str:
    attribute = f' nc:operation="{operation}"' if operation else ""
    return (
        f"<qkd_links><qkd_link{attribute}><qkdl_id>{link_id}</qkdl_id>"
        f"<qkdl_type>t:VIRT</qkdl_type><virt_bandwidth>{bandwidth}</virt_bandwidth>"
        "</qkd_link></qkd_links>"
    )


def _texts(element: Any, xpath: str) -> list[str]:
    return [str(v) for v in element.xpath(xpath, namespaces={"q": NS})]


def _running(session: Any) -> bytes:
    return bytes(etree.tostring(session.get_config("running").data_ele, method="c14n"))


def _error(caught: pytest.ExceptionInfo[RPCError]) -> RPCError:
    return caught.value


def test_hello_advertises_session_id_and_every_capability(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        capabilities = set(session.server_capabilities)
        assert int(session.session_id) >= 1
        for wanted in (
            "urn:ietf:params:netconf:base:1.0",
            "urn:ietf:params:netconf:base:1.1",
            "urn:ietf:params:netconf:capability:writable-running:1.0",
            "urn:ietf:params:netconf:capability:candidate:1.0",
            "urn:ietf:params:netconf:capability:validate:1.1",
            "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
            "urn:ietf:params:netconf:capability:notification:1.0",
            "urn:ietf:params:netconf:capability:interleave:1.0",
        ):
            assert wanted in capabilities
        assert any("module=ietf-netconf-monitoring" in c for c in capabilities)
        assert any(c.startswith(f"{NS}?module=etsi-qkd-sdn-node") for c in capabilities)


def test_get_merges_operational_state_into_running(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        data = session.get().data_ele
        assert _texts(data, "//q:qkdn_id/text()") == [NODE_ID]
        assert _texts(data, "//q:qkdn_status/text()")[0].endswith(":OPERATING")
        config = session.get_config("running").data_ele
        assert _texts(config, "//q:qkdn_status") == []


def test_subtree_filters_select_and_an_unmatched_filter_returns_empty_data(
    tmp_path: Path,
) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        selected = session.get(
            filter=(
                "subtree",
                f'<qkd_node xmlns="{NS}"><qkd_links><qkd_link><skr/></qkd_link>'
                "<qkd_link><qkdl_performance/></qkd_link></qkd_links></qkd_node>",
            )
        ).data_ele
        assert _texts(selected, "//q:qkd_link/q:qkdl_id/text()") == [LINK_ID]
        assert _texts(selected, "//q:skr/text()") == ["1000"]
        assert _texts(selected, "//q:qkdn_id") == []
        empty = session.get(filter=("subtree", '<qkd_node xmlns="urn:nowhere"/>')).data_ele
        assert len(empty) == 0
        by_value = session.get_config(
            "running",
            filter=(
                "subtree",
                f'<qkd_node xmlns="{NS}"><qkdn_location_id>lab</qkdn_location_id></qkd_node>',
            ),
        ).data_ele
        assert _texts(by_value, "//q:qkdn_id/text()") == [NODE_ID]


def test_edit_running_applies_persists_and_survives_a_restart(tmp_path: Path) -> None:
    backend = FakeBackend()
    with running_agent(tmp_path, backend) as agent, connect(agent) as session:
        assert agent.datastore is not None
        revision = agent.datastore.revision
        session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        assert agent.datastore.revision == revision + 1
        applied = backend.applied[-1]["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
        assert applied[0]["qkdl_type"] == "etsi-qkd-node-types:VIRT"
        assert LINK_ID in agent.persist_path.read_text()
    with running_agent(tmp_path) as agent, connect(agent) as session:
        assert _texts(session.get_config("running").data_ele, "//q:qkdl_id/text()") == [LINK_ID]


def test_create_existing_is_data_exists_and_delete_missing_is_data_missing(
    tmp_path: Path,
) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        with pytest.raises(RPCError) as caught:
            session.edit_config(
                target="running", config=_config(_virt_link(LINK_ID, operation="create"))
            )
        assert _error(caught).tag == "data-exists"
        assert _error(caught).type == "application"
        assert _error(caught).path == (
            "/etsi-qkd-sdn-node:qkd_node/etsi-qkd-sdn-node:qkd_links/etsi-qkd-sdn-node:qkd_link"
            f"[etsi-qkd-sdn-node:qkdl_id='{LINK_ID}']"
        )
        with pytest.raises(RPCError) as caught:
            session.edit_config(
                target="running", config=_config(_virt_link(OTHER_LINK, operation="delete"))
            )
        assert _error(caught).tag == "data-missing"
        session.edit_config(
            target="running", config=_config(_virt_link(LINK_ID, operation="delete"))
        )
        assert _texts(session.get_config("running").data_ele, "//q:qkdl_id") == []


def test_invalid_yang_data_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    backend = FakeBackend()
    with running_agent(tmp_path, backend) as agent, connect(agent) as session:
        before = _running(session)
        with pytest.raises(RPCError) as caught:
            session.edit_config(
                target="running", config=_config(_virt_link(LINK_ID, bandwidth="lots"))
            )
        error = _error(caught)
        assert error.tag == "invalid-value"
        assert error.severity == "error"
        assert error.message
        with pytest.raises(RPCError) as caught:
            session.edit_config(target="running", config=_config("<no_such_leaf>1</no_such_leaf>"))
        assert _error(caught).tag == "unknown-element"
        assert _running(session) == before
        assert backend.applied == []


def test_veto_changes_nothing(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.veto_reason = "no free key rate"
    with running_agent(tmp_path, backend) as agent, connect(agent) as session:
        before = _running(session)
        with pytest.raises(RPCError) as caught:
            session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        assert _error(caught).tag == "operation-failed"
        assert "no free key rate" in _error(caught).message
        assert len(backend.vetoed) == 1
        assert _running(session) == before
        assert backend.applied == []


def test_rollback_on_error_undoes_the_parts_that_succeeded(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        before = _running(session)
        body = f"<qkdn_location_id>moved</qkdn_location_id>{_virt_link(OTHER_LINK)}" + _virt_link(
            LINK_ID, operation="create"
        )
        with pytest.raises(RPCError) as caught:
            session.edit_config(
                target="running", config=_config(body), error_option="rollback-on-error"
            )
        assert _error(caught).tag == "data-exists"
        assert _running(session) == before


def test_test_only_validates_without_applying(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        before = _running(session)
        session.edit_config(
            target="running", config=_config(_virt_link(LINK_ID)), test_option="test-only"
        )
        assert _running(session) == before


def test_candidate_edit_validate_commit_and_discard(tmp_path: Path) -> None:
    backend = FakeBackend()
    with running_agent(tmp_path, backend) as agent, connect(agent) as session:
        before = _running(session)
        session.edit_config(target="candidate", config=_config(_virt_link(LINK_ID)))
        assert _running(session) == before
        candidate = session.get_config("candidate").data_ele
        assert _texts(candidate, "//q:qkdl_id/text()") == [LINK_ID]
        session.validate(source="candidate")
        session.commit()
        assert _texts(session.get_config("running").data_ele, "//q:qkdl_id/text()") == [LINK_ID]
        assert len(backend.applied) == 1
        session.edit_config(target="candidate", config=_config(_virt_link(OTHER_LINK)))
        session.discard_changes()
        assert _texts(session.get_config("candidate").data_ele, "//q:qkdl_id/text()") == [LINK_ID]


def test_copy_config_replaces_whole_datastores(tmp_path: Path) -> None:
    backend = FakeBackend()
    with running_agent(tmp_path, backend) as agent, connect(agent) as session:
        session.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        session.copy_config(source="running", target="candidate")
        assert _texts(session.get_config("candidate").data_ele, "//q:qkdl_id/text()") == [LINK_ID]
        replacement = _source(f"<qkdn_id>{NODE_ID}</qkdn_id>{_virt_link(OTHER_LINK)}")
        session.copy_config(source=replacement, target="running")
        assert _texts(session.get_config("running").data_ele, "//q:qkdl_id/text()") == [OTHER_LINK]
        assert len(backend.applied) == 2
        before = _running(session)
        with pytest.raises(RPCError) as caught:
            session.copy_config(source=_source(_virt_link(LINK_ID)), target="running")
        assert _error(caught).type == "application"  # qkdn_id is mandatory
        assert _running(session) == before
        with pytest.raises(RPCError) as caught:
            session.delete_config(target="running")
        assert _error(caught).tag == "operation-not-supported"


def test_commit_of_invalid_candidate_is_refused_and_running_unchanged(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        before = _running(session)
        # test-option set lets the candidate hold an invalid intermediate state.
        session.edit_config(
            target="candidate",
            config=_config(f'<qkdn_id xmlns:nc="{BASE_NS}" nc:operation="delete"/>'),
            test_option="set",
        )
        with pytest.raises(RPCError) as caught:
            session.validate(source="candidate")
        assert _error(caught).type == "application"
        with pytest.raises(RPCError):
            session.commit()
        assert _running(session) == before


def test_lock_denied_names_the_holder_and_locks_die_with_the_session(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as second:
        first = connect(agent)
        first.lock("running")
        with pytest.raises(RPCError) as caught:
            second.lock("running")
        error = _error(caught)
        assert error.tag == "lock-denied"
        info = etree.fromstring(error.info.encode())
        assert info.findtext(f"{{{BASE_NS}}}session-id") == str(first.session_id)
        with pytest.raises(RPCError) as caught:
            second.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        assert _error(caught).tag == "in-use"
        first.close_session()
        wait_until(lambda: agent.session_count() == 1, "the first session to end")
        second.lock("running")
        second.edit_config(target="running", config=_config(_virt_link(LINK_ID)))
        second.unlock("running")


def test_unlock_of_a_lock_not_held_fails(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        with pytest.raises(RPCError) as caught:
            session.unlock("candidate")
        assert _error(caught).tag == "operation-failed"


def test_kill_session_ends_the_other_session_and_frees_its_lock(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as killer:
        victim = connect(agent)
        victim.lock("candidate")
        killer.kill_session(victim.session_id)
        wait_until(lambda: not victim.connected, "the victim to be disconnected")
        killer.lock("candidate")
        with pytest.raises(RPCError) as caught:
            killer.kill_session(killer.session_id)
        assert _error(caught).tag == "invalid-value"


def test_notifications_reach_subscribers_interleaved_with_rpcs(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as subscriber, connect(agent) as other:
        subscriber.create_subscription()
        # :interleave — the subscribed session still answers operations.
        assert _texts(subscriber.get().data_ele, "//q:qkdn_id/text()") == [NODE_ID]
        agent.publish(
            f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{LINK_ID}</qkdl_id>'
            "<reason>fiber cut</reason></qkd_link></sdqkdn_link_down>"
        )
        notification = subscriber.take_notification(block=True, timeout=10)
        assert notification is not None
        event = notification.notification_ele
        assert _texts(event, "//q:qkdl_id/text()") == [LINK_ID]
        assert event.findtext("{urn:ietf:params:xml:ns:netconf:notification:1.0}eventTime")
        assert other.take_notification(block=False) is None


def test_publish_from_another_thread_is_delivered_on_the_loop(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as subscriber:
        subscriber.create_subscription()
        assert agent.server is not None
        agent.server.publish(  # called from the test thread, not the agent's loop
            f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{LINK_ID}</qkdl_id>'
            "</qkd_link></sdqkdn_link_down>"
        )
        notification = subscriber.take_notification(block=True, timeout=10)
        assert notification is not None
        assert LINK_ID in notification.notification_xml


def test_invalid_notification_is_refused_by_publish(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, pytest.raises(ValueError):
        agent.publish(f'<sdqkdn_link_down xmlns="{NS}"><bogus/></sdqkdn_link_down>')


def test_get_schema_returns_the_yang_text(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        reply = session.get_schema("etsi-qkd-sdn-node")
        assert "module etsi-qkd-sdn-node" in str(reply.data)
        with pytest.raises(RPCError) as caught:
            session.get_schema("no-such-module")
        assert _error(caught).tag == "invalid-value"


def test_public_key_login_works_and_wrong_credentials_are_refused(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        with connect(
            agent, password=None, key_filename=str(agent.client_keys.private_key_path)
        ) as session:
            assert session.connected
        with pytest.raises(AuthenticationError):
            connect(agent, password="wrong")


def test_concurrent_edits_from_two_sessions_keep_the_datastore_consistent(
    tmp_path: Path,
) -> None:
    ids = [f"44444444-4444-4444-8444-{index:012d}" for index in range(20)]
    failures: list[BaseException] = []
    with running_agent(tmp_path) as agent, connect(agent) as first, connect(agent) as second:

        def writer(session: Any, mine: list[str]) -> None:
            try:
                for link_id in mine:
                    session.edit_config(target="running", config=_config(_virt_link(link_id)))
            except BaseException as error:  # reported in the main thread
                failures.append(error)

        threads = [
            threading.Thread(target=writer, args=(first, ids[0::2])),
            threading.Thread(target=writer, args=(second, ids[1::2])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == []
        stored = _texts(first.get_config("running").data_ele, "//q:qkdl_id/text()")
        assert sorted(stored) == ids
        assert agent.datastore is not None
        assert agent.datastore.revision == len(ids)


def test_subscription_filter_selects_the_events_a_session_gets(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.create_subscription(
            filter=("subtree", f'<sdqkdn_link_down xmlns="{NS}"/>'),
        )
        agent.publish(
            f'<sdqkdn_interface_out xmlns="{NS}"><qkd_interface><qkdi_id>1</qkdi_id>'
            "</qkd_interface></sdqkdn_interface_out>"
        )
        agent.publish(
            f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{LINK_ID}</qkdl_id>'
            "</qkd_link></sdqkdn_link_down>"
        )
        notification = session.take_notification(block=True, timeout=10)
        assert notification is not None
        assert "sdqkdn_link_down" in notification.notification_xml
        assert session.take_notification(block=False) is None
        with pytest.raises(RPCError) as caught:
            session.create_subscription(stream_name="OTHER")
        assert _error(caught).tag == "invalid-value"
        with pytest.raises(RPCError) as caught:
            session.create_subscription()
        assert _error(caught).tag == "in-use"
