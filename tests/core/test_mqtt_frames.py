"""Ingest's framing of the broker's stream: whatever way the bytes are cut, the QoS 0 and 1
publishes come out decoded, in order, and every other packet comes out byte for byte."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given

from adapters.mqtt.frames import Publish, PublishSplitter
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
