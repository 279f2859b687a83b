"""The few MQTT 3.1.1 packets CareKnot writes by hand, where a client library costs too much:
the probe that asks whether a broker answers, and the benchmarks' phone load, which must not
spend the CPU of the system it measures (paho builds every message in Python; ready packets
are only written).

Only what those need: CONNECT (with a last will: the simulated devices'), CONNACK's success
test, QoS 0 and QoS 1 PUBLISH (retained or not), PUBACK's packet id, and DISCONNECT.
"""

from __future__ import annotations

DISCONNECT = b"\xe0\x00"


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 60,
    will: tuple[str, bytes] | None = None,
) -> bytes:
    """A clean-session CONNECT; with ``will`` (topic, payload), the last will the broker
    publishes, retained at QoS 1, should the connection end without DISCONNECT."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = string("MQTT") + bytes([4, flags | (0x2C if will else 0)])
    body += keepalive.to_bytes(2, "big") + string(client_id)
    if will is not None:
        body += string(will[0]) + string(will[1])
    for field in (username, password):
        if field:
            body += string(field)
    return b"\x10" + remaining_length(len(body)) + body


def connack_accepted(packet: bytes) -> bool:
    """Whether a 4-byte CONNACK says the connection was accepted."""
    return packet[:2] == b"\x20\x02" and packet[3:4] == b"\x00"


def publish(
    topic: str, payload: bytes, packet_id: int | None = None, *, retain: bool = False
) -> bytes:
    """A QoS 0 PUBLISH, or QoS 1 with ``packet_id`` (1 to 65,535; the broker answers PUBACK);
    ``retain``: the broker keeps it for whoever subscribes later."""
    kept = 0x01 if retain else 0
    if packet_id is None:
        body = string(topic) + payload
        return bytes([0x30 | kept]) + remaining_length(len(body)) + body
    if not 0 < packet_id < 65536:
        raise ValueError(f"a packet id is 1 to 65535, not {packet_id}")
    body = string(topic) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32 | kept]) + remaining_length(len(body)) + body


PUBACK_LENGTH = 4


def puback_ids(data: bytes) -> list[int]:
    """The packet ids of the PUBACKs in ``data``, which holds whole PUBACKs only (a QoS 1
    publisher's connection carries nothing else back)."""
    if len(data) % PUBACK_LENGTH or any(data[i] != 0x40 for i in range(0, len(data), 4)):
        raise ValueError(f"not PUBACKs: {data[:16]!r}")
    return [int.from_bytes(data[i + 2 : i + 4], "big") for i in range(0, len(data), 4)]
