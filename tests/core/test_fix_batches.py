"""Fixes packed many to a Kafka message: partitions as Kafka's own partitioner, order kept,
and the worker reads back exactly what was packed (a bad fix costs only itself)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.storage.live import cell_of
from ingest.batching import FixBatches, partition_of
from kernel.contracts import FixEvent, LocationFrame
from streams.fix_flow import decode_fixes, location_frame
from tests.support import fix_event

# Murmur2 of these keys as the Java client computes it (signed 32-bit), from Kafka's own tests.
JAVA_MURMUR2 = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 4, 7, 32])
def test_partition_is_the_one_kafkas_default_partitioner_gives(
    key: str, java: int, partitions: int
) -> None:
    assert partition_of(key, partitions) == (java & 0x7FFFFFFF) % partitions


def test_fixes_are_packed_per_partition_in_order_and_chunked() -> None:
    batches = FixBatches(partitions=4, max_per_message=3)
    sent = [fix_event(f"cg{n % 9}", 1000.0 + n) for n in range(40)]
    for f in sent:
        batches.add(f.caregiver_id, f.model_dump_json().encode())
    assert len(batches) == 40
    messages = batches.drain()
    assert len(batches) == 0 and batches.drain() == []
    assert all(1 <= count <= 3 for _, count, _ in messages)
    by_partition: dict[int, list[FixEvent]] = {}
    for p, count, value in messages:
        got = decode_fixes([value])
        assert len(got) == count
        assert all(partition_of(f.caregiver_id, 4) == p for f in got)
        by_partition.setdefault(p, []).extend(got)
    for p, got in by_partition.items():
        assert got == [f for f in sent if partition_of(f.caregiver_id, 4) == p]


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 10**6)), max_size=60))
def test_every_fix_packed_is_read_back_once(pairs: list[tuple[str, int]]) -> None:
    batches = FixBatches(partitions=3, max_per_message=7)
    sent = [fix_event(c, float(t)) for c, t in pairs]
    for f in sent:
        batches.add(f.caregiver_id, f.model_dump_json().encode())
    got = decode_fixes([value for _, _, value in batches.drain()])
    assert sorted(got, key=lambda f: f.event_id) == sorted(sent, key=lambda f: f.event_id)


def test_a_single_fix_message_is_read_as_before() -> None:
    f = fix_event("cg1", 1.0)
    assert decode_fixes([f.model_dump_json().encode()]) == [f]


def test_a_bad_fix_in_a_batch_costs_only_itself() -> None:
    good = [fix_event("cg1", 1.0), fix_event("cg2", 2.0)]
    items = [good[0].model_dump(), {"caregiver_id": "cg3", "lat": "north"}, good[1].model_dump()]
    assert decode_fixes([orjson.dumps(items)]) == good
    assert decode_fixes([b"[not json", good[0].model_dump_json().encode()]) == [good[0]]


def test_batches_need_partitions() -> None:
    with pytest.raises(ValueError, match="positive"):
        FixBatches(partitions=0)


def test_location_frame_is_the_contracts_frame() -> None:
    f = fix_event("cg7", 1234.5)
    frame = location_frame(f, {"cg7": "busy"})
    expected = LocationFrame(
        caregiver_id="cg7", lat=f.lat, lon=f.lon, h3=cell_of(f.lat, f.lon), ts=f.ts, status="busy"
    )
    assert frame == expected.model_dump(mode="json")
    assert LocationFrame.model_validate(frame) == expected
