"""Vitals downsampled to minutes: per patient, measure and minute, the lowest, the highest, the
sum and the count of the values kept, so the mean, and so a minute written in several batches
adds up. Postgres aggregates them as the raw samples are inserted (``adapters.storage.vitals``);
here is which minute a moment belongs to (epoch seconds of its start, in UTC).
"""

from __future__ import annotations

MINUTE_S = 60


def minute_of(ts: float) -> int:
    return int(ts // MINUTE_S) * MINUTE_S
