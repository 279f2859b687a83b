"""Pure MQTT 3.1.1 framing of what the broker sends ingest: PUBLISH packets taken out in bulk.

A flood of small PUBLISH packets is ingest's whole input; decoding each one in the client
library (paho: several reads, a message object, locks, topic matching, a callback, then
aiomqtt's own message object and queue) cost more than everything ingest does with it.
:class:`PublishSplitter` takes the bytes as they come, in chunks cut anywhere, and gives back
the QoS 0 and QoS 1 PUBLISH packets decoded (topic, payload, QoS, packet id) and every other
packet (CONNACK, SUBACK, PINGRESP, QoS 2 publishes...) untouched, whole and in order, for the
client library to handle as before. A PUBLISH it cannot decode (a topic or packet id longer than
its packet) goes to the library as it came, and so does the rest of a stream it cannot frame (a
remaining length over four bytes), so the library refuses them as it always did.
"""

from __future__ import annotations

from typing import NamedTuple

PUBLISH = 3
MAX_LENGTH_BYTES = 4


class Publish(NamedTuple):
    """A message the broker delivered: its topic (undecodable UTF-8 replaced, so it matches
    no topic ingest accepts), payload, QoS and packet id (0 at QoS 0)."""

    topic: str
    payload: bytes
    qos: int
    mid: int


class PublishSplitter:
    """One connection's inbound stream: PUBLISH packets out, the rest passed through."""

    def __init__(self) -> None:
        self._rest = b""
        self._framing = True

    def feed(self, data: bytes) -> tuple[list[Publish], bytes]:
        """The QoS 0/1 publishes completed by ``data``, and the bytes of the other packets it
        completed (a packet cut short waits for the next feed)."""
        if not self._framing:
            return [], data
        buf = self._rest + data if self._rest else data
        publishes: list[Publish] = []
        passed: list[bytes] = []
        at, end = 0, len(buf)
        while at < end:
            body, length = _frame(buf, at, end)
            if body < 0:
                break
            if body == 0:  # not MQTT as we know it: the library gets the rest as it is
                self._framing = False
                passed.append(buf[at:])
                at = end
                break
            packet_end = body + length
            head = buf[at]
            qos = (head >> 1) & 3
            publish = None
            if head >> 4 == PUBLISH and qos < 2:
                publish = _publish(buf, body, packet_end, qos)
            if publish is None:
                passed.append(buf[at:packet_end])
            else:
                publishes.append(publish)
            at = packet_end
        self._rest = buf[at:]
        return publishes, b"".join(passed)


def _frame(buf: bytes, at: int, end: int) -> tuple[int, int]:
    """(where the packet at ``at`` has its body, its length); (-1, 0) if it is not all
    there yet; (0, 0) if its remaining length is malformed."""
    length, shift, p = 0, 0, at + 1
    while True:
        if p >= end:
            return -1, 0
        byte = buf[p]
        p += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if p - at > MAX_LENGTH_BYTES:
            return 0, 0
    if p + length > end:
        return -1, 0
    return p, length


def _publish(buf: bytes, body: int, end: int, qos: int) -> Publish | None:
    """The PUBLISH in ``buf[body:end]``, or None if its topic or packet id overruns it."""
    topic_end = body + 2 + int.from_bytes(buf[body : body + 2], "big")
    payload_at = topic_end + (2 if qos else 0)
    if payload_at > end:
        return None
    mid = int.from_bytes(buf[topic_end:payload_at], "big") if qos else 0
    topic = buf[body + 2 : topic_end].decode("utf-8", "replace")
    return Publish(topic, buf[payload_at:end], qos, mid)
