"""Fixes travel to the workers in batches: one Kafka message holds many caregivers' fixes.

Phones send one fix per MQTT message; the stream processors pay per Kafka message, not per
fix, so ingest packs what one wake-up took into one message per partition. A fix goes to the
partition Kafka's default partitioner would give its caregiver's id (murmur2 of the key), so a
caregiver's fixes stay in one partition, in order, whichever way they are packed; a batch's
message carries a JSON array of fixes (a message holding one fix object is read the same).
"""

from __future__ import annotations

from functools import lru_cache

from adapters.kafka import default_partition

MAX_FIXES_PER_MESSAGE = 500


@lru_cache(maxsize=262_144)
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (remembered:
    a caregiver's fixes ask again and again)."""
    return default_partition(key.encode(), partitions)


class FixBatches:
    """Fix JSON values gathered per partition, in arrival order, until drained."""

    def __init__(self, partitions: int, max_per_message: int = MAX_FIXES_PER_MESSAGE) -> None:
        if partitions < 1 or max_per_message < 1:
            raise ValueError("partitions and max_per_message must be positive")
        self._partitions = partitions
        self._max = max_per_message
        self._waiting: dict[int, list[bytes]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._waiting.values())

    def add(self, caregiver_id: str, fix_json: bytes) -> None:
        p = partition_of(caregiver_id, self._partitions)
        self._waiting.setdefault(p, []).append(fix_json)

    def drain(self) -> list[tuple[int, int, bytes]]:
        """(partition, fix count, message value) for everything gathered; empties the batches.
        A partition's fixes keep their order across its messages."""
        out = []
        for p, values in sorted(self._waiting.items()):
            for start in range(0, len(values), self._max):
                chunk = values[start : start + self._max]
                out.append((p, len(chunk), b"[" + b",".join(chunk) + b"]"))
        self._waiting = {}
        return out
