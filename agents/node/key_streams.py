"""The module side of ETSI GS QKD 004: key streams of the node's QKD modules, one per PHYS link."""

from __future__ import annotations

from agents.emulator.hardware import NodeHardware
from agents.emulator.qkd_module import KeyResult, OpenResult, Status


class KeyStreams:
    """OPEN_CONNECT, GET_KEY and CLOSE on the modules of one node."""

    def __init__(self, hardware: NodeHardware) -> None:
        self._hardware = hardware

    def open_connect(
        self, source: str, destination: str, key_stream_id: str, chunk_bytes: int, owner: str
    ) -> OpenResult:
        """OPEN_CONNECT; without a key_stream_id, the stream of the link to `destination`."""
        modules = self._hardware.modules
        if not key_stream_id:
            key_stream_id = next(
                (q for q, m in modules.items() if m.end.peer_uri == destination), ""
            )
        module = modules.get(key_stream_id)
        if module is None:
            return OpenResult(Status.NO_QKD_CONNECTION, key_stream_id, 0, 0, "no such key stream")
        with self._hardware.lock:
            return module.open_connect(source, destination, key_stream_id, chunk_bytes, owner)

    def get_key(self, key_stream_id: str, index: int | None) -> KeyResult:
        module = self._hardware.modules.get(key_stream_id)
        if module is None:
            return KeyResult(Status.NO_QKD_CONNECTION, index or 0, message="no such key stream")
        with self._hardware.lock:
            return module.get_key(key_stream_id, index)

    def reserve_through(self, key_stream_id: str, index: int) -> str:
        """One position write covering a batch of GET_KEYs up to `index`; "" or why not."""
        module = self._hardware.modules.get(key_stream_id)
        if module is None:
            return ""
        with self._hardware.lock:
            return module.reserve_through(index)

    def ready_in(self, key_stream_id: str, index: int | None) -> float | None:
        module = self._hardware.modules.get(key_stream_id)
        if module is None or not module.stream_open:
            return None
        with self._hardware.lock:
            return module.ready_in(index)

    def close(self, key_stream_id: str) -> Status:
        module = self._hardware.modules.get(key_stream_id)
        if module is None:
            return Status.NO_QKD_CONNECTION
        with self._hardware.lock:
            return module.close(key_stream_id)
