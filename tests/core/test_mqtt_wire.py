"""Hand-written MQTT 3.1.1 packets, against the examples of the specification."""

from __future__ import annotations

import pytest

from adapters.mqtt import wire as mqtt_wire


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_as_the_specification_tabulates(n: int, encoded: bytes) -> None:
    assert mqtt_wire.remaining_length(n) == encoded


def test_publish_qos0() -> None:
    packet = mqtt_wire.publish("a/b", b"hi")
    assert packet == b"\x30\x07\x00\x03a/bhi"


def test_publish_qos1_carries_its_packet_id_after_the_topic() -> None:
    packet = mqtt_wire.publish("a/b", b"hi", packet_id=10)
    assert packet == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    with pytest.raises(ValueError, match="packet id"):
        mqtt_wire.publish("a/b", b"hi", packet_id=0)


def test_pubacks_give_their_packet_ids_and_anything_else_is_refused() -> None:
    assert mqtt_wire.puback_ids(b"\x40\x02\x00\x0a\x40\x02\xff\xff") == [10, 65535]
    assert mqtt_wire.puback_ids(b"") == []
    for bad in (b"\x40\x02\x00", b"\x30\x02\x00\x0a"):
        with pytest.raises(ValueError, match="PUBACK"):
            mqtt_wire.puback_ids(bad)


def test_connect_with_credentials() -> None:
    packet = mqtt_wire.connect("c1", "u", "p", keepalive=10)
    body = b"\x00\x04MQTT\x04\xc2\x00\x0a\x00\x02c1\x00\x01u\x00\x01p"
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connack() -> None:
    assert mqtt_wire.connack_accepted(b"\x20\x02\x00\x00")
    assert not mqtt_wire.connack_accepted(b"\x20\x02\x00\x05")  # not authorised
    assert not mqtt_wire.connack_accepted(b"")
