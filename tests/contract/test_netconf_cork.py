"""Replies are written with the TCP socket corked (one segment for asyncssh's two packets)."""

from __future__ import annotations

import socket

from agents.netconf.server import _Channel

TCP_CORK = socket.TCP_CORK  # the agents run on Linux


class FakeSocket:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int, /) -> None:
        if self.fail:
            raise OSError("not a TCP socket")
        self.calls.append((level, option, value))


class FakeChannel:
    def __init__(self, sock: FakeSocket | None, log: list[object]) -> None:
        self.sock = sock
        self.log = log

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None

    def write(self, data: bytes) -> None:
        self.log.append(data)

    def close(self) -> None:
        self.log.append("closed")


def _channel(sock: FakeSocket | None, log: list[object]) -> _Channel:
    return _Channel(FakeChannel(sock, log))  # type: ignore[arg-type]


def test_write_is_corked_around_the_channel_write() -> None:
    sock = FakeSocket()
    log: list[object] = []
    channel = _channel(sock, log)
    channel.write(b"reply")
    assert log == [b"reply"]
    assert sock.calls == [(socket.IPPROTO_TCP, TCP_CORK, 1), (socket.IPPROTO_TCP, TCP_CORK, 0)]


def test_a_socket_that_cannot_cork_still_gets_every_write() -> None:
    sock = FakeSocket(fail=True)
    log: list[object] = []
    channel = _channel(sock, log)
    channel.write(b"one")
    sock.fail = False
    channel.write(b"two")
    assert log == [b"one", b"two"]
    assert sock.calls == []  # given up after the first failure


def test_no_socket_means_plain_writes() -> None:
    log: list[object] = []
    channel = _channel(None, log)
    channel.write(b"x")
    channel.close()
    assert log == [b"x", "closed"]
