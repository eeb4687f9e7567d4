"""Device sessions without a network: capabilities checked before sending, ncclient errors
mapped to the controller's own, secrets kept out of repr, reconnect backoff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.operations.errors import TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import TransportError

from controller.devices.service import MAX_POLLS_PER_S, Backoff, poll_period
from controller.devices.session import (
    CANDIDATE,
    DeviceAddress,
    NetconfSession,
    host_key_b64,
)
from controller.errors import CapabilityMissing, DeviceError, DeviceUnavailable, RpcFailed

ADDRESS = DeviceAddress("id", "qnode1", "127.0.0.1", 830, "qkdsdn", password="s3cret-pw")


class FakeHandle:
    """Stands in for an ncclient Manager: records calls, raises what it is told to."""

    def __init__(self, capabilities: list[str], error: Exception | None = None) -> None:
        self.server_capabilities = capabilities
        self.connected = True
        self.error = error
        self.calls: list[str] = []

    def _call(self, name: str) -> Any:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        return None

    def lock(self, target: str) -> Any:
        return self._call("lock")

    def edit_config(self, target: str, config: str, test_option: str | None = None) -> Any:
        return self._call(f"edit test-option={test_option}")

    def commit(self) -> Any:
        return self._call("commit")

    def validate(self, source: str) -> Any:
        return self._call("validate")


def session(
    capabilities: list[str], error: Exception | None = None
) -> tuple[NetconfSession, FakeHandle]:
    handle = FakeHandle(capabilities, error)
    return NetconfSession(ADDRESS, None, handle), handle


def test_operations_needing_the_candidate_fail_before_sending() -> None:
    netconf, handle = session(["urn:ietf:params:netconf:base:1.1"])
    for operation in (netconf.lock, netconf.commit, lambda: netconf.edit_candidate("<config/>")):
        with pytest.raises(CapabilityMissing, match="candidate"):
            operation()
    assert handle.calls == []
    netconf.validate_candidate()  # no :validate offered: skipped, commit validates anyway
    assert handle.calls == []


def test_an_edit_asks_the_device_to_validate_when_it_can() -> None:
    validating, handle = session([CANDIDATE, "urn:ietf:params:netconf:capability:validate:1.1"])
    validating.edit_candidate("<config/>")
    plain, plain_handle = session([CANDIDATE])
    plain.edit_candidate("<config/>")
    assert handle.calls == ["edit test-option=test-then-set"]
    assert plain_handle.calls == ["edit test-option=None"]


def test_capabilities_match_without_their_parameters() -> None:
    netconf, handle = session([f"{CANDIDATE}?foo=bar"])
    netconf.lock()
    assert handle.calls == ["lock"]


def rpc_error() -> RPCError:
    raw = etree.fromstring(
        '<rpc-error xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        "<error-type>application</error-type><error-tag>operation-failed</error-tag>"
        "<error-severity>error</error-severity><error-message>vetoed: modules busy</error-message>"
        "</rpc-error>"
    )
    return RPCError(raw)


@pytest.mark.parametrize(
    "error, kind, text",
    [
        (rpc_error(), RpcFailed, "operation-failed: vetoed: modules busy"),
        (TimeoutExpiredError("late"), DeviceError, "timed out"),
        (TransportError("Not connected"), DeviceUnavailable, "Not connected"),
    ],
)
def test_ncclient_errors_become_the_controllers_own(
    error: Exception, kind: type[Exception], text: str
) -> None:
    netconf, _ = session([CANDIDATE], error)
    with pytest.raises(kind, match=text) as caught:
        netconf.commit()
    assert "qnode1" in str(caught.value)


def test_secrets_stay_out_of_repr() -> None:
    assert "s3cret-pw" not in repr(ADDRESS)


def test_host_key_pin_is_read_from_the_public_key_file(tmp_path: Path) -> None:
    pub = tmp_path / "host_key.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0= comment\n")
    assert host_key_b64(pub) == "AAAAC3NzaC1lZDI1NTE5AAAAIE0="
    assert host_key_b64(tmp_path / "missing.pub") is None


def test_reconnect_backoff_doubles_up_to_a_cap() -> None:
    next_delay = Backoff(first=0.05, factor=2.0, cap=0.3).delays()
    assert [next_delay() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_fallback_polls_of_a_large_network_stay_below_the_rate_cap() -> None:
    assert poll_period(5.0, 3) == 5.0  # a small network: the configured interval
    assert poll_period(5.0, 100) == 100 / MAX_POLLS_PER_S  # 100 devices: 1 poll/s in all
    assert 200 / poll_period(5.0, 200) <= MAX_POLLS_PER_S
