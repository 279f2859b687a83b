"""Ingest's read-ahead socket, on a real socket pair (no server needed): one ``recv`` takes a
chunk, its publishes are delivered at once, and paho's small reads get the other packets'
bytes exactly."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from adapters.mqtt.client import PublishInbox, ReadAheadSocket
from adapters.mqtt.frames import Publish
from adapters.mqtt.wire import publish

PINGRESP = b"\xd0\x00"
SUBACK = b"\x90\x03\x00\x01\x01"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_publishes_are_delivered_and_the_rest_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    delivered: list[list[Publish]] = []
    ahead = ReadAheadSocket(reader, delivered.append)
    writer.sendall(publish("a/b", b"one") + SUBACK + publish("a/c", b"two") + PINGRESP)
    assert ahead.pending() == 0
    assert ahead.recv(1) == SUBACK[:1]
    assert delivered == [[Publish("a/b", b"one", 0, 0), Publish("a/c", b"two", 0, 0)]]
    assert ahead.pending() == len(SUBACK) + len(PINGRESP) - 1
    assert ahead.recv(1) == SUBACK[1:2]
    assert ahead.recv(100) == SUBACK[2:] + PINGRESP  # never more than it holds
    assert ahead.pending() == 0
    with pytest.raises(BlockingIOError):
        ahead.recv(1)  # nothing read ahead, and nothing in the kernel: as the socket says


def test_a_chunk_of_publishes_alone_leaves_paho_nothing_to_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    delivered: list[list[Publish]] = []
    ahead = ReadAheadSocket(reader, delivered.append, chunk_bytes=10)
    packet = publish("t", b"a longer payload")  # longer than a chunk
    writer.sendall(packet * 2)
    reads = 0
    while sum(map(len, delivered)) < 2:
        with pytest.raises(BlockingIOError):
            ahead.recv(1)
        reads += 1
    assert reads == -(-len(packet) * 2 // 10)
    assert delivered == [[Publish("t", b"a longer payload", 0, 0)]] * 2


def test_the_end_of_the_stream_reads_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    ahead = ReadAheadSocket(reader, lambda _: None)
    writer.sendall(PINGRESP)
    writer.shutdown(socket.SHUT_WR)
    assert ahead.recv(2) == PINGRESP
    assert ahead.recv(1) == b""


def test_everything_else_is_the_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    _, reader = pair
    ahead = ReadAheadSocket(reader, lambda _: None)
    assert ahead.fileno() == reader.fileno()
    assert ahead.getblocking() is False


def test_a_holding_reader_leaves_the_kernel_its_bytes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    delivered: list[list[Publish]] = []
    holding = True
    ahead = ReadAheadSocket(reader, delivered.append, holding=lambda: holding)
    writer.sendall(publish("a/b", b"one") + PINGRESP)
    with pytest.raises(BlockingIOError):
        ahead.recv(1)
    assert delivered == []
    assert reader.recv(1, socket.MSG_PEEK)  # still the kernel's
    holding = False
    assert ahead.recv(2) == PINGRESP
    assert delivered == [[Publish("a/b", b"one", 0, 0)]]


async def test_the_inbox_stops_the_reader_when_full_and_starts_it_at_half() -> None:
    said: list[str] = []
    inbox = PublishInbox(capacity=10)
    inbox.flow(lambda: said.append("pause"), lambda: said.append("resume"))
    messages = [Publish("t", str(n).encode(), 0, 0) for n in range(25)]
    inbox.put_many(messages[:9])
    assert (said, inbox.paused) == ([], False)
    inbox.put_many(messages[9:12])  # one read may bring more than the room left
    inbox.put_many(messages[12:25])  # what was read already still comes in
    assert (said, inbox.paused, len(inbox)) == (["pause"], True, 25)
    taken = await inbox.take(10)
    assert said == ["pause"]  # 15 wait: more than half
    taken += await inbox.take(10)
    assert (said, inbox.paused) == (["pause", "resume"], False)
    taken += await inbox.take(10)
    assert taken == messages  # nothing dropped, nothing reordered
