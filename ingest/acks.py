"""When ingest may acknowledge a batch to the MQTT broker: once Kafka has everything it produced.

A QoS 1 message acknowledged is the broker's no more: were ingest to die with it undelivered, it
would be lost. So each batch taken from a connection gets a :class:`Receipt` that waits on
every Kafka message its handling produced (a dead letter, a presence notice) and on the packed
messages its fixes went into (a :class:`Round`: the fixes packed between two flushes, carried by
one message a partition, so a batch waits on its round's messages and nothing is flushed per
batch). A connection's :class:`AckLine` acknowledges its batches in the order they came, each
once its receipt is settled. A receipt that failed (Kafka did not take one of its messages, or
a device event given up) is not acknowledged, nor is anything behind it: the line calls its
``renew``, which gives the connection up, and the broker sends what was not acknowledged again
to the session's next connection; a batch of QoS 0 messages alone has nothing the broker would
send again, so its failure renews nothing. Pure: no I/O, only callbacks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


def _nothing() -> None:
    """No one to tell."""


class AckLine:
    """A connection's batches, acknowledged in the order they came, each once settled; a
    failed one calls ``renew`` instead, and the line forgets those behind it."""

    def __init__(self, renew: Callable[[], None], emptied: Callable[[], None] = _nothing) -> None:
        self._renew = renew
        self._emptied = emptied
        self._waiting: deque[Receipt] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def receipt(self, ack: Callable[[], None] | None) -> Receipt:
        """The receipt of the batch just taken, which ``ack`` acknowledges (None: nothing to
        acknowledge, QoS 0 alone); held until :meth:`Receipt.handled`."""
        receipt = Receipt(self, ack)
        self._waiting.append(receipt)
        return receipt

    def release(self) -> None:
        """Acknowledge the settled batches at the head of the line (``emptied`` is told when
        none is left)."""
        waiting = self._waiting
        while waiting and waiting[0].settled:
            receipt = waiting.popleft()
            if receipt.ack is None:
                continue  # QoS 0 alone: nothing to acknowledge, nothing to have again
            if receipt.failed:
                waiting.clear()  # the broker sends them all again
                self._renew()
                break
            receipt.ack()
        if not waiting:
            self._emptied()

    def forget(self, receipt: Receipt) -> None:
        """A batch that will not be handled: neither it nor those behind it is acknowledged
        (the broker sends them again to the session's next connection)."""
        while self._waiting and self._waiting.pop() is not receipt:
            pass
        self.release()


class Receipt:
    """A batch's acknowledgement, due once every delivery it waits on is settled and the batch
    is handled."""

    __slots__ = ("_line", "_waiting", "ack", "failed", "round")

    def __init__(self, line: AckLine, ack: Callable[[], None] | None) -> None:
        self._line = line
        self._waiting = 1  # the batch's handling itself
        self.ack = ack
        self.failed = False
        self.round: Round | None = None
        """The round of packed fixes it waits on last."""

    @property
    def settled(self) -> bool:
        return self._waiting == 0

    def expect(self) -> None:
        """One more delivery to wait on."""
        self._waiting += 1

    def settle(self, failed: bool = False) -> None:
        """A delivery waited on is settled: Kafka has the message, or ``failed``."""
        self.failed = self.failed or failed
        self._waiting -= 1
        if self._waiting == 0:
            self._line.release()

    def fail(self) -> None:
        """Something of the batch is lost unless the broker sends it again."""
        self.failed = True

    def handled(self) -> None:
        """The batch is handled: from now on only its deliveries hold it."""
        self.settle()


class Round:
    """The fixes packed between two flushes: the receipts of the batches they came from, told
    once every message carrying them is delivered (failed if any was not)."""

    __slots__ = ("_failed", "_receipts", "_waiting")

    def __init__(self) -> None:
        self._receipts: list[Receipt] = []
        self._waiting = 0
        self._failed = False

    def join(self, receipt: Receipt) -> None:
        """A fix of ``receipt``'s batch is packed in this round."""
        if receipt.round is not self:
            receipt.round = self
            receipt.expect()
            self._receipts.append(receipt)

    def carried_by(self, messages: int) -> None:
        """The round is flushed into ``messages`` Kafka messages (a receipt joined and no
        message: settled at once)."""
        self._waiting = messages
        if messages == 0:
            self._settled()

    def settle(self, failed: bool = False) -> None:
        """One of its messages is delivered, or ``failed``."""
        self._failed = self._failed or failed
        self._waiting -= 1
        if self._waiting == 0:
            self._settled()

    def _settled(self) -> None:
        receipts, self._receipts = self._receipts, []
        for receipt in receipts:
            receipt.settle(self._failed)
