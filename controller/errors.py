"""The controller's own exceptions; third-party ones (ncclient) are mapped to these at the edge."""

from __future__ import annotations


class ControllerError(Exception):
    """Base of every controller error."""


class NodeDataError(ControllerError):
    """A node sent data the controller cannot read."""


class DeviceError(ControllerError):
    """A NETCONF operation on a device failed; `device` names it."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class DeviceUnavailable(DeviceError):
    """The device is not connected (never was, or went away)."""


class CapabilityMissing(DeviceError):
    """The device lacks a capability the operation needs (checked before sending)."""


class RpcFailed(DeviceError):
    """The device answered with <rpc-error> (e.g. a veto of the change)."""


class CompileError(ControllerError):
    """An intent compiled into configuration the YANG models reject."""


class InstallError(ControllerError):
    """An intent could not be installed on every node; nothing was left behind."""


class UnknownIntent(ControllerError):
    """No intent with that id."""
