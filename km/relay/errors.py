"""Why a relay hop failed, in one vocabulary shared by the forwarder, servicer and client."""

from __future__ import annotations

import enum

import grpc


class FailureKind(enum.Enum):
    REFUSED = "refused"  # no forwarding entry, wrong sender or receiver
    BAD_REQUEST = "bad request"  # malformed hop
    TAMPERED = "tampered"  # authentication failed, link-key index reused, key_ID replayed
    UNAVAILABLE = "unavailable"  # no link key in time, next KM unreachable or too slow


_TO_GRPC = {
    FailureKind.REFUSED: grpc.StatusCode.PERMISSION_DENIED,
    FailureKind.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    FailureKind.TAMPERED: grpc.StatusCode.DATA_LOSS,
    FailureKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
_FROM_GRPC = {code: kind for kind, code in _TO_GRPC.items()}


class RelayFailure(Exception):
    """A hop failed; `message` names the hop (e.g. "hop qnode2→qnode3: ...") and no material."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _TO_GRPC[self.kind]

    @staticmethod
    def from_grpc(code: grpc.StatusCode, details: str, where: str) -> RelayFailure:
        """A failure reported by (or on the way to) the next KM."""
        kind = _FROM_GRPC.get(code)
        if kind is not None and details.startswith("hop "):
            return RelayFailure(kind, details)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return RelayFailure(FailureKind.UNAVAILABLE, f"{where}: no answer in time")
        return RelayFailure(
            FailureKind.UNAVAILABLE, f"{where}: key manager unreachable ({code.name}: {details})"
        )
