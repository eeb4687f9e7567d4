"""Sans-IO RFC 6242 message framing: end-of-message (base:1.0) and chunked (base:1.1).

The decoder is pull-style: `feed()` bytes, then call `next_message()` until it returns None.
Pulling one message at a time lets the session switch to chunked framing right after the
hello, before any byte that follows the hello in the same read is decoded (RFC 6242 §4.1).
"""

from __future__ import annotations

import enum

END_OF_MESSAGE = b"]]>]]>"
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_CHUNK_SIZE = 4294967295  # RFC 6242 §4.2
_MAX_HEADER = len(b"\n#4294967295\n")


class FramingMode(enum.Enum):
    END_OF_MESSAGE = "end-of-message"  # base:1.0, used by every hello
    CHUNKED = "chunked"  # base:1.1


class FramingError(Exception):
    """The peer broke the framing; the session cannot continue."""


def encode_message(message: bytes, mode: FramingMode) -> bytes:
    """One message framed for the wire."""
    if mode is FramingMode.END_OF_MESSAGE:
        return message + END_OF_MESSAGE
    if not message:
        raise FramingError("a chunked message needs at least one byte")
    return b"\n#%d\n%s\n##\n" % (len(message), message)


class _ChunkState(enum.Enum):
    HEADER = "header"  # expecting "\n#<size>\n" or "\n##\n"
    DATA = "data"  # expecting `remaining` bytes of chunk data


class FrameDecoder:
    """Turns a byte stream into complete messages; never blocks, never grows unbounded."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._mode = FramingMode.END_OF_MESSAGE
        self._max = max_message_size
        self._search_from = 0  # end-of-message: bytes already known to hold no delimiter
        self._chunk_state = _ChunkState.HEADER
        self._remaining = 0
        self._parts: list[bytes] = []
        self._size = 0  # chunked: bytes of the current message so far

    @property
    def mode(self) -> FramingMode:
        return self._mode

    def set_mode(self, mode: FramingMode) -> None:
        """Switch framing between two messages (after the hello)."""
        self._mode = mode
        self._search_from = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive.

        Raises FramingError on broken framing or a message over the size limit.
        """
        if self._mode is FramingMode.END_OF_MESSAGE:
            return self._next_end_of_message()
        return self._next_chunked()

    def _next_end_of_message(self) -> bytes | None:
        index = self._buffer.find(END_OF_MESSAGE, self._search_from)
        if index < 0:
            if len(self._buffer) > self._max + len(END_OF_MESSAGE):
                raise FramingError(f"message exceeds {self._max} bytes")
            # The delimiter may straddle two reads: search again from its possible start.
            self._search_from = max(0, len(self._buffer) - len(END_OF_MESSAGE) + 1)
            return None
        if index > self._max:
            raise FramingError(f"message exceeds {self._max} bytes")
        message = bytes(self._buffer[:index])
        del self._buffer[: index + len(END_OF_MESSAGE)]
        self._search_from = 0
        return message

    def _next_chunked(self) -> bytes | None:
        while True:
            if self._chunk_state is _ChunkState.DATA:
                if not self._buffer:
                    return None
                take = min(self._remaining, len(self._buffer))
                self._parts.append(bytes(self._buffer[:take]))
                del self._buffer[:take]
                self._remaining -= take
                if self._remaining:
                    return None
                self._chunk_state = _ChunkState.HEADER
                continue
            header = self._parse_header()
            if header is None:
                return None
            if header == 0:  # end of chunks
                if not self._parts:
                    raise FramingError("end-of-chunks marker before any chunk")
                message = b"".join(self._parts)
                self._parts = []
                self._size = 0
                return message
            self._size += header
            if self._size > self._max:
                raise FramingError(f"message exceeds {self._max} bytes")
            self._remaining = header
            self._chunk_state = _ChunkState.DATA

    def _parse_header(self) -> int | None:
        """Consume one chunk header: its size, 0 for end-of-chunks, None if incomplete."""
        buffer = self._buffer
        for position, expected in enumerate(b"\n#"):
            if len(buffer) <= position:
                return None
            if buffer[position] != expected:
                raise FramingError("expected a chunk header")
        if len(buffer) < 3:
            return None
        if buffer[2] == ord("#"):
            if len(buffer) < 4:
                return None
            if buffer[3] != ord("\n"):
                raise FramingError("malformed end-of-chunks marker")
            del buffer[:4]
            return 0
        end = buffer.find(b"\n", 2, _MAX_HEADER)
        if end < 0:
            if len(buffer) >= _MAX_HEADER:
                raise FramingError("chunk size too long")
            digits = bytes(buffer[2:])
            if not digits.isdigit() or digits.startswith(b"0"):
                raise FramingError("malformed chunk size")
            return None
        digits = bytes(buffer[2:end])
        if not digits or not digits.isdigit() or digits.startswith(b"0"):
            raise FramingError("malformed chunk size")
        size = int(digits)
        if size > MAX_CHUNK_SIZE:
            raise FramingError("chunk size above 4294967295")
        del buffer[: end + 1]
        return size
