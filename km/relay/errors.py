"""Why a relay hop failed, in one vocabulary shared by the forwarder, servicer and client."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import grpc


class FailureKind(enum.Enum):
    REFUSED = "refused"  # no forwarding entry, wrong sender or receiver
    BAD_REQUEST = "bad request"  # malformed hop
    TAMPERED = "tampered"  # authentication failed, link-key index reused, key_ID replayed
    UNAVAILABLE = "unavailable"  # no link key in time, next KM unreachable or too slow
    # The receiver no longer has link keys below `frontier` (it restarted): the sender drops
    # its own indices below it and retries the hop once. Never travels further than one hop.
    LINK_KEYS_GONE = "link keys gone"


_TO_GRPC = {
    FailureKind.REFUSED: grpc.StatusCode.PERMISSION_DENIED,
    FailureKind.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    FailureKind.TAMPERED: grpc.StatusCode.DATA_LOSS,
    FailureKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    FailureKind.LINK_KEYS_GONE: grpc.StatusCode.FAILED_PRECONDITION,
}
FRONTIER_METADATA = "qkdsdn-link-frontier"
_FROM_GRPC = {code: kind for kind, code in _TO_GRPC.items()}


class RelayFailure(Exception):
    """A hop failed; `message` names the hop (e.g. "hop qnode2→qnode3: ...") and no material."""

    def __init__(self, kind: FailureKind, message: str, frontier: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.frontier = frontier
        if (kind is FailureKind.LINK_KEYS_GONE) != (frontier is not None):
            raise ValueError("a frontier goes with LINK_KEYS_GONE, and only with it")

    @property
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        if self.frontier is None:
            return ()
        return ((FRONTIER_METADATA, str(self.frontier)),)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _TO_GRPC[self.kind]

    @staticmethod
    def from_grpc(
        code: grpc.StatusCode,
        details: str,
        where: str,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> RelayFailure:
        """A failure reported by (or on the way to) the next KM."""
        kind = _FROM_GRPC.get(code)
        if kind is FailureKind.LINK_KEYS_GONE:
            frontier = _frontier(metadata)
            if frontier is None:
                return RelayFailure(FailureKind.TAMPERED, details)
            return RelayFailure(kind, details, frontier)
        if kind is not None and details.startswith(("hop ", "resync ", "void ")):
            return RelayFailure(kind, details)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return RelayFailure(FailureKind.UNAVAILABLE, f"{where}: no answer in time")
        return RelayFailure(
            FailureKind.UNAVAILABLE, f"{where}: key manager unreachable ({code.name}: {details})"
        )


def _frontier(metadata: Sequence[tuple[str, str | bytes]]) -> int | None:
    for key, value in metadata:
        if key == FRONTIER_METADATA:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else None
    return None
