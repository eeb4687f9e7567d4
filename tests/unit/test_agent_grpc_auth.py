"""The agents' method rule (agents/grpc_auth.authorize): who may call what, pure."""

from __future__ import annotations

import grpc
import pytest

from agents.grpc_auth import authorize
from common.roles import Identity, Role

KM_A = Identity(Role.KM, "a")
METHODS = {
    "/qkdsdn.etsi004.KeyDelivery/OpenConnect": {KM_A},
    "/qkdsdn.etsi004.KeyDelivery/GetKey": {KM_A},
    "/qkdsdn.etsi004.KeyDelivery/Close": {KM_A},
    "/qkdsdn.node_link.NodeLink/RegisterApplication": {KM_A},
    "/qkdsdn.node_link.NodeLink/WatchConfig": {KM_A},
    "/qkdsdn.agents.control.AgentControl/SetLink": {Identity(Role.OPERATOR, "lab")},
    "/qkdsdn.agents.control.AgentControl/StopNode": {Identity(Role.OPERATOR, "lab")},
    "/qkdsdn.agents.control.AgentControl/Status": {Identity(Role.OPERATOR, "lab")},
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": set(),
}
CALLERS = [
    KM_A,
    Identity(Role.KM, "b"),
    Identity(Role.AGENT, "a"),
    Identity(Role.SAE, "a"),
    Identity(Role.CONTROLLER, "controller"),
    Identity(Role.OPERATOR, "lab"),
]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_admits_exactly_its_role_on_this_node(method: str) -> None:
    for caller in CALLERS:
        refusal = authorize(method, caller, "a")
        if caller in METHODS[method]:
            assert refusal is None, (method, caller)
        else:
            assert refusal is not None and refusal.code is grpc.StatusCode.PERMISSION_DENIED
            assert str(caller) in refusal.reason or "not served" in refusal.reason


def test_a_caller_without_a_role_is_unauthenticated() -> None:
    refusal = authorize("/qkdsdn.etsi004.KeyDelivery/GetKey", None, "a")
    assert refusal is not None and refusal.code is grpc.StatusCode.UNAUTHENTICATED
    assert "urn:qkdsdn:ROLE:NAME" in refusal.reason
