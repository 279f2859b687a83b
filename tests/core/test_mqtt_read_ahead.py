"""Ingest's read-ahead socket serves paho's small reads from one large ``recv``, byte for byte,
and says how much it still holds; tested on a real socket pair (no server needed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ingest.mqtt_client import ReadAheadSocket


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_come_from_one_chunk(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    ahead = ReadAheadSocket(reader, chunk_bytes=64)
    writer.sendall(b"\x30\x05hello\x30\x03abc")
    assert ahead.pending() == 0
    assert ahead.recv(1) == b"\x30"
    assert ahead.pending() == 11  # the rest of what the kernel held is read ahead
    assert ahead.recv(1) == b"\x05"
    assert ahead.recv(5) == b"hello"
    assert ahead.recv(100) == b"\x30\x03abc"  # never more than the chunk holds
    assert ahead.pending() == 0
    with pytest.raises(BlockingIOError):
        ahead.recv(1)  # nothing read ahead, and nothing in the kernel: as the socket says


def test_a_packet_longer_than_a_chunk_arrives_whole(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    ahead = ReadAheadSocket(reader, chunk_bytes=7)
    sent = bytes(range(256)) * 4
    writer.sendall(sent)
    got = b""
    while len(got) < len(sent):
        part = ahead.recv(len(sent) - len(got))
        assert 0 < len(part) <= 7
        got += part
    assert got == sent


def test_the_end_of_the_stream_reads_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    ahead = ReadAheadSocket(reader)
    writer.sendall(b"ab")
    writer.shutdown(socket.SHUT_WR)
    assert ahead.recv(1) == b"a"
    assert ahead.recv(1) == b"b"
    assert ahead.recv(1) == b""


def test_everything_else_is_the_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    _, reader = pair
    ahead = ReadAheadSocket(reader)
    assert ahead.fileno() == reader.fileno()
    assert ahead.getblocking() is False
