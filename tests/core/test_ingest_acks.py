"""A batch is acknowledged once everything it produced is delivered, batches in order; a failed
one renews the connection and nothing behind it is acknowledged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.acks import AckLine, Receipt, Round


class Broker:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.renewed = 0

    def renew(self) -> None:
        self.renewed += 1

    def line(self) -> AckLine:
        return AckLine(self.renew)

    def batch(self, line: AckLine, n: int) -> Receipt:
        return line.receipt(lambda: self.acked.append(n))


def test_a_batch_waits_for_its_deliveries_and_for_the_batches_before_it() -> None:
    broker = Broker()
    line = broker.line()
    first, second = broker.batch(line, 1), broker.batch(line, 2)
    first.expect()  # a dead letter in flight
    first.handled()
    second.handled()
    assert broker.acked == []  # the second waits for the first
    first.settle()
    assert broker.acked == [1, 2]
    assert len(line) == 0


def test_fixes_packed_together_hold_every_batch_they_came_from_until_flushed_and_delivered() -> (
    None
):
    broker = Broker()
    line, packed = broker.line(), Round()
    first, second = broker.batch(line, 1), broker.batch(line, 2)
    for receipt in (first, second, first):
        packed.join(receipt)
    first.handled()
    second.handled()
    packed.carried_by(2)  # two partitions
    packed.settle()
    assert broker.acked == []
    packed.settle()
    assert broker.acked == [1, 2]


def test_a_batch_whose_fixes_went_into_two_rounds_waits_for_both() -> None:
    broker = Broker()
    line, early, late = broker.line(), Round(), Round()
    receipt = broker.batch(line, 1)
    early.join(receipt)
    early.carried_by(1)  # flushed while the batch was handled
    late.join(receipt)
    receipt.handled()
    early.settle()
    assert broker.acked == []
    late.carried_by(1)
    late.settle()
    assert broker.acked == [1]


def test_a_failed_delivery_renews_the_connection_and_acknowledges_nothing_behind_it() -> None:
    broker = Broker()
    line, packed = broker.line(), Round()
    batches = [broker.batch(line, n) for n in range(3)]
    batches[0].handled()
    packed.join(batches[1])
    packed.carried_by(1)
    for receipt in batches[1:]:
        receipt.handled()
    assert broker.acked == [0]
    packed.settle(failed=True)
    assert (broker.acked, broker.renewed, len(line)) == ([0], 1, 0)


def test_a_device_event_given_up_fails_its_batch() -> None:
    broker = Broker()
    line = broker.line()
    receipt = broker.batch(line, 1)
    receipt.fail()
    receipt.handled()
    assert (broker.acked, broker.renewed) == ([], 1)


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=30))
def test_acknowledged_in_order_each_only_once_settled(plan: list[tuple[int, bool]]) -> None:
    """Batches with 0-3 deliveries each, settled in any order: a prefix of the batches is
    acknowledged, in order, exactly those before the first failure once all are settled."""
    broker = Broker()
    line = broker.line()
    receipts = [broker.batch(line, n) for n in range(len(plan))]
    deliveries = []
    for receipt, (count, failed) in zip(receipts, plan, strict=True):
        for k in range(count):
            receipt.expect()
            deliveries.append((receipt, failed and k == count - 1))
        if failed and not count:
            receipt.fail()  # a device event given up while the batch was handled
        receipt.handled()
    for receipt, failed in reversed(deliveries):
        receipt.settle(failed)
    first_failure = next((n for n, (_, failed) in enumerate(plan) if failed), len(plan))
    assert broker.acked == list(range(first_failure))
    assert broker.renewed == (1 if first_failure < len(plan) else 0)


def test_a_batch_not_handled_is_forgotten_with_those_behind_it_and_the_line_says_when_empty() -> (
    None
):
    broker, emptied = Broker(), []
    line = AckLine(broker.renew, emptied=lambda: emptied.append(True))
    first, second, third = (broker.batch(line, n) for n in range(3))
    first.expect()
    first.handled()
    line.forget(second)  # its handling was cancelled: the third is behind it
    assert len(line) == 1
    third.handled()
    first.settle()
    assert (broker.acked, broker.renewed, emptied) == ([0], 0, [True])


def test_a_failed_batch_of_qos_0_alone_renews_nothing_and_holds_nothing_up() -> None:
    """Nothing of it would come again: the connection is kept, the batches behind go on."""
    broker = Broker()
    line = broker.line()
    unacknowledged = line.receipt(None)
    behind = broker.batch(line, 1)
    unacknowledged.fail()
    unacknowledged.handled()
    behind.handled()
    assert (broker.acked, broker.renewed) == ([1], 0)
