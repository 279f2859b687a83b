"""Ingest's framing of the broker's stream: whatever way the bytes are cut, the QoS 0 and 1
publishes come out decoded, in order, and every other packet comes out byte for byte."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given

from adapters.mqtt.frames import KEPT_OF_REFUSED, Publish, PublishSplitter
from adapters.mqtt.wire import remaining_length, string

PINGRESP = b"\xd0\x00"
SUBACK = b"\x90\x03\x00\x01\x01"
CONNACK = b"\x20\x02\x00\x00"


def publish_packet(p: Publish, *, dup: bool = False, retain: bool = False) -> bytes:
    """A PUBLISH as a broker writes it (an encoder of the test's own)."""
    head = 0x30 | (p.qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = string(p.topic) + (p.mid.to_bytes(2, "big") if p.qos else b"") + p.payload
    return bytes([head]) + remaining_length(len(body)) + body


def feed_all(pieces: list[bytes]) -> tuple[list[Publish], bytes]:
    splitter, got, passed = PublishSplitter(), [], b""
    for piece in pieces:
        publishes, other = splitter.feed(piece)
        got += publishes
        passed += other
    return got, passed


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({min(p, len(stream)) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


publishes = st.builds(
    Publish,
    topic=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    payload=st.binary(max_size=300),
    qos=st.sampled_from([0, 1]),
    mid=st.integers(1, 65535),
    refused_bytes=st.just(0),
).map(lambda p: p if p.qos else p._replace(mid=0))
qos2 = st.builds(Publish, st.just("ck/a/cg/b/loc"), st.binary(max_size=20), st.just(2), st.just(9))
others = st.sampled_from([PINGRESP, SUBACK, CONNACK]) | qos2.map(publish_packet)


@given(
    st.lists(st.one_of(publishes, others), max_size=30),
    st.lists(st.integers(0, 20_000), max_size=12),
    st.booleans(),
)
def test_any_cut_gives_the_same_packets(
    packets: list[Publish | bytes], points: list[int], flags: bool
) -> None:
    wire = [
        publish_packet(p, dup=flags, retain=flags) if isinstance(p, Publish) else p for p in packets
    ]
    got, passed = feed_all(cut(b"".join(wire), points))
    assert got == [p for p in packets if isinstance(p, Publish)]
    assert passed == b"".join(p for p in packets if isinstance(p, bytes))


def test_a_packet_cut_short_waits_for_the_rest() -> None:
    packet = publish_packet(Publish("ck/a/cg/b/loc", b"x" * 200, 1, 7))
    splitter = PublishSplitter()
    assert splitter.feed(packet[:2]) == ([], b"")  # inside the remaining length
    assert splitter.feed(packet[2:50]) == ([], b"")
    assert splitter.feed(packet[50:] + PINGRESP) == (
        [Publish("ck/a/cg/b/loc", b"x" * 200, 1, 7)],
        PINGRESP,
    )


def test_an_undecodable_topic_matches_no_topic_of_ours() -> None:
    body = b"\x00\x03ck\xff" + b"{}"
    (got,), _ = PublishSplitter().feed(b"\x30" + remaining_length(len(body)) + body)
    assert got.topic == "ck\ufffd"
    assert got.payload == b"{}"


def test_a_topic_longer_than_its_packet_goes_to_the_library() -> None:
    broken = b"\x30\x04\x00\x09ab"  # says 9 topic bytes, has 2
    good = publish_packet(Publish("t", b"p", 0, 0))
    got, passed = PublishSplitter().feed(broken + good)
    assert passed == broken
    assert got == [Publish("t", b"p", 0, 0)]


def test_a_malformed_length_passes_the_rest_through_untouched() -> None:
    good = publish_packet(Publish("t", b"p", 0, 0))
    broken = b"\x30\xff\xff\xff\xff\x01"  # a remaining length of five bytes
    splitter = PublishSplitter()
    assert splitter.feed(good + broken + good) == ([Publish("t", b"p", 0, 0)], broken + good)
    assert splitter.feed(good) == ([], good)  # from there on, the library frames the stream


# ---------------------------------------------------------------- publishes over the bound

BOUND = 200
"""A splitter's bound in these tests: a publish's remaining length above it is refused."""


def remaining(p: Publish) -> int:
    return 2 + len(p.topic.encode()) + (2 if p.qos else 0) + len(p.payload)


def as_split(p: Publish) -> Publish:
    """What a splitter bounded at :data:`BOUND` gives for ``p``: itself, or its refusal."""
    if remaining(p) <= BOUND:
        return p
    return p._replace(payload=p.payload[:KEPT_OF_REFUSED], refused_bytes=remaining(p))


@given(
    st.lists(st.one_of(publishes, others), max_size=30),
    st.lists(st.integers(0, 20_000), max_size=12),
)
def test_a_bounded_splitter_refuses_what_is_over_its_bound_and_holds_little(
    packets: list[Publish | bytes], points: list[int]
) -> None:
    wire = b"".join(publish_packet(p) if isinstance(p, Publish) else p for p in packets)
    splitter, got, passed = PublishSplitter(BOUND), [], b""
    for piece in cut(wire, points):
        publishes, other = splitter.feed(piece)
        got += publishes
        passed += other
        assert splitter.buffered <= max(BOUND + 5, 2 + 160 + 2 + KEPT_OF_REFUSED + 5)
    assert got == [as_split(p) for p in packets if isinstance(p, Publish)]
    assert passed == b"".join(p for p in packets if isinstance(p, bytes))
    refused = [p for p in got if p.refused_bytes]
    assert splitter.discarded == sum(p.refused_bytes - remaining(p) for p in refused)


def test_a_publish_of_256_mib_is_refused_without_being_held() -> None:
    """Fed as a broker would send it, a piece at a time: its head is taken, every byte after
    it counted and dropped as it comes, and the publish behind it comes out whole."""
    limit = 4096 + 260
    size = 256 * 1024 * 1024 - 1  # the longest remaining length MQTT can say
    topic = "ck/a1/dev/d1/evt"
    head = b"\x32" + remaining_length(size) + string(topic) + (7).to_bytes(2, "big")
    payload_bytes = size - len(string(topic)) - 2
    piece = b"x" * 65_536
    splitter = PublishSplitter(limit)
    got, held = [], []
    for fed in [head[:3], head[3:], *[piece] * (payload_bytes // len(piece))]:
        got += splitter.feed(fed)[0]
        held.append(splitter.buffered)
    tail = payload_bytes % len(piece)
    after = publish_packet(Publish("ck/a1/cg/c1/loc", b"{}", 1, 8))
    got += splitter.feed(b"x" * tail + after)[0]
    assert got == [
        Publish(topic, b"x" * KEPT_OF_REFUSED, 1, 7, refused_bytes=size),
        Publish("ck/a1/cg/c1/loc", b"{}", 1, 8),
    ]
    assert max(held) <= len(head)  # never more than the packet's head
    assert splitter.buffered == 0
    assert splitter.discarded == payload_bytes - KEPT_OF_REFUSED


def test_an_unbounded_splitter_takes_any_size_whole() -> None:
    big = Publish("t", b"y" * 100_000, 1, 3)
    assert PublishSplitter().feed(publish_packet(big)) == ([big], b"")
