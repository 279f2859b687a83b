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

A QoS 0 or 1 PUBLISH longer than the splitter's bound (``max_publish_bytes``, its remaining
length, which MQTT lets reach 256 MiB) is refused as soon as that length is read, never
buffered: the splitter waits only for its head (the topic, the packet id, the first
:data:`KEPT_OF_REFUSED` bytes of the payload) and discards the rest as it arrives, counting it
(:attr:`PublishSplitter.discarded`). The refusal comes out among the publishes, in its place, as
a :class:`Publish` with ``refused_bytes`` set, so that ingest dead-letters it with its reason
and acknowledges its packet id with its batch: acknowledging says the message was received,
not accepted (as for every payload ingest refuses), and a QoS 1 publish never acknowledged
would hold one of the broker's in-flight slots and come again after every reconnection, bytes
and all, for ever. QoS 2 publishes are not bounded here: ingest subscribes at QoS 1, so the
broker sends none, and the few other packets a broker sends are small.
"""

from __future__ import annotations

from typing import NamedTuple

PUBLISH = 3
MAX_LENGTH_BYTES = 4
KEPT_OF_REFUSED = 1024
"""How much of a refused publish's payload is kept, for the record of what was refused."""


class Publish(NamedTuple):
    """A message the broker delivered: its topic (undecodable UTF-8 replaced, so it matches
    no topic ingest accepts), payload, QoS and packet id (0 at QoS 0); ``refused_bytes`` is the
    remaining length of a publish refused for its size (``payload`` is then only its first
    bytes), 0 for a publish taken whole."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    refused_bytes: int = 0


class PublishSplitter:
    """One connection's inbound stream: PUBLISH packets out, the rest passed through; a
    QoS 0/1 publish longer than ``max_publish_bytes`` (None: no bound) refused unbuffered."""

    def __init__(self, max_publish_bytes: int | None = None) -> None:
        self._rest = b""
        self._framing = True
        self._max = max_publish_bytes
        self._skipping = 0
        self.discarded = 0
        """Bytes of refused publishes discarded as they came."""

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not all here yet."""
        return len(self._rest)

    def feed(self, data: bytes) -> tuple[list[Publish], bytes]:
        """The QoS 0/1 publishes completed (or refused) by ``data``, and the bytes of the other
        packets it completed (a packet cut short waits for the next feed)."""
        if not self._framing:
            return [], data
        if self._skipping:
            data = self._skip(data)
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
            head = buf[at]
            qos = (head >> 1) & 3
            decodable = head >> 4 == PUBLISH and qos < 2
            if decodable and self._max is not None and length > self._max:
                head_end = _head_end(buf, body, length, qos, end)
                if head_end < 0:
                    break  # its head is not all here yet
                if head_end > 0:
                    refused = _publish(buf, body, head_end, qos)
                    assert refused is not None  # its topic and packet id end before head_end
                    publishes.append(refused._replace(refused_bytes=length))
                    at = self._discard(head_end, body + length, end)
                    continue
            packet_end = body + length
            if packet_end > end:
                break
            publish = _publish(buf, body, packet_end, qos) if decodable else None
            if publish is None:
                passed.append(buf[at:packet_end])
            else:
                publishes.append(publish)
            at = packet_end
        self._rest = buf[at:]
        return publishes, b"".join(passed)

    def _discard(self, head_end: int, packet_end: int, end: int) -> int:
        """Discard a refused publish's bytes from ``head_end`` to ``packet_end``: those here
        now, and those still to come as they arrive; where the next packet starts here."""
        here = min(packet_end, end)
        self.discarded += here - head_end
        self._skipping = packet_end - here
        return here

    def _skip(self, data: bytes) -> bytes:
        """``data`` past the bytes of a refused publish still being discarded."""
        skipped = min(self._skipping, len(data))
        self._skipping -= skipped
        self.discarded += skipped
        return data[skipped:]


def _frame(buf: bytes, at: int, end: int) -> tuple[int, int]:
    """(where the packet at ``at`` has its body, its length), whether or not the body is all
    there; (-1, 0) if its remaining length is not all there yet; (0, 0) if it is malformed."""
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


def _head_end(buf: bytes, body: int, length: int, qos: int, end: int) -> int:
    """Where the head of the PUBLISH at ``body`` ends (its topic, packet id and the payload's
    first :data:`KEPT_OF_REFUSED` bytes); -1 if that is not all in ``buf[:end]`` yet; 0 if its
    topic and packet id overrun the packet (which is then shorter than 64 KiB)."""
    if body + 2 > end:
        return -1
    payload_at = body + 2 + int.from_bytes(buf[body : body + 2], "big") + (2 if qos else 0)
    packet_end = body + length
    if payload_at > packet_end:
        return 0
    head_end = min(payload_at + KEPT_OF_REFUSED, packet_end)
    return head_end if head_end <= end else -1
