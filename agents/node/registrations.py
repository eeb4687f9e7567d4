"""NodeLink: applications the key manager registers, raised as `sdqkdn_application_new`."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from agents import notifications
from agents.emulator.hardware import NodeHardware, NodeStatus
from agents.notifications import AppRequest
from common.tracing import Tracer
from yang.model import KeyMode

RegistrationKey = tuple[str, tuple[str, ...], str, str]  # ..., remote node, key mode
KEY_MODES = tuple(mode.value for mode in KeyMode)


class Registrations:
    """Applications registered and not yet configured, raised at most once per period."""

    def __init__(
        self,
        hardware: NodeHardware,
        renotify_after_s: float,
        tracer: Tracer,
        emit: Callable[[list[str], bool], None],
    ) -> None:
        self._hardware = hardware
        self._renotify_after_s = renotify_after_s
        self._tracer = tracer
        self._emit = emit
        self._pending: dict[RegistrationKey, float] = {}

    def register(self, request: AppRequest) -> tuple[bool, str]:
        """Raises `sdqkdn_application_new` for the key manager (at most once per
        `renotify_after_s` for the same applications while no qkd_app for them exists)."""
        problem = registration_problem(request)
        if problem:
            return False, problem
        hardware = self._hardware
        if hardware.status is NodeStatus.DOWN:
            return False, "the node is stopped"
        key = (
            request.server_app_id,
            tuple(sorted(request.client_app_ids)),
            request.remote_qkdn_id,
            request.key_mode,
        )
        now = hardware.site.clock()
        with hardware.lock:
            last = self._pending.get(key)
            if last is not None and now - last < self._renotify_after_s:
                return True, "already registered: waiting for the controller"
            self._pending[key] = now
        self._tracer.emit(
            "app.registered",
            node=hardware.name,
            server_app_id=request.server_app_id,
            client_app_ids=list(request.client_app_ids),
            remote_qkdn_id=request.remote_qkdn_id,
            key_mode=request.key_mode or KeyMode.QKD_PREFERRED.value,
        )
        try:
            self._emit([notifications.application_new(request)], True)
        except ValueError as error:
            with hardware.lock:
                self._pending.pop(key, None)
            return False, str(error)
        return True, "sdqkdn_application_new raised"

    def configured(self, server_app_id: str | None, client_app_ids: tuple[str, ...]) -> None:
        """A qkd_app for these applications exists: a new registration raises at once."""
        clients = tuple(sorted(client_app_ids))
        for key in [k for k in self._pending if k[0] == server_app_id and k[1] == clients]:
            del self._pending[key]


def registration_problem(request: AppRequest) -> str:
    if not request.server_app_id:
        return "server_app_id is required"
    if not request.client_app_ids or not all(request.client_app_ids):
        return "at least one client_app_id is required"
    if request.app_type not in ("CLIENT", "INTERNAL"):
        return f"app_type must be CLIENT or INTERNAL, not {request.app_type!r}"
    try:
        uuid.UUID(request.remote_qkdn_id)
    except ValueError:
        return f"remote_qkdn_id {request.remote_qkdn_id!r} is not a UUID"
    if request.key_mode and request.key_mode not in KEY_MODES:
        return f"key_mode {request.key_mode!r} is not one of {', '.join(KEY_MODES)}"
    return ""
