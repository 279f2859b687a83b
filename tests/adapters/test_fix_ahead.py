"""The fixes worker refuses a fix stamped further ahead of its clock than ``max_fix_ahead_s``:
dead-lettered as ``from_future`` and counted, never her newest position, so the true fixes
after it move her as before (had it been kept, they would all be ``out_of_order`` until the
clock caught up with it).

The fixes worker's step (:class:`streams.fix_flow.FixPipeline`) against the real Redis,
Postgres and Kafka, in a namespace of the module's own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from kernel import keys
from kernel.contracts import FixEvent
from kernel.settings import Settings
from streams.fix_flow import FixPipeline
from streams.runtime import Runtime
from tests.support import kafka_reader, wait_for

pytestmark = pytest.mark.servers

AGENCY = f"fa-{uuid.uuid4().hex[:8]}"
CAREGIVER = f"{AGENCY}-cg"
WITHIN_S = 30.0


@pytest.fixture
async def pipeline(settings: Settings, first_migration: list[int]) -> AsyncIterator[FixPipeline]:
    rt = await Runtime(settings, dispatching=False).ready()
    yield FixPipeline(rt, settings)
    await rt.close()


def fix(ts: float, lat: float = 53.8) -> bytes:
    event = FixEvent(
        event_id=f"{CAREGIVER}:{ts}",
        agency_id=AGENCY,
        caregiver_id=CAREGIVER,
        lat=lat,
        lon=-1.55,
        ts=ts,
        acc=8.0,
        received_at=time.time(),
    )
    return b"[" + event.model_dump_json().encode() + b"]"


async def letter_about(settings: Settings) -> dict[str, Any] | None:
    async with kafka_reader(settings, keys.DEADLETTER) as reader:
        while batches := await reader.getmany(timeout_ms=500):
            for records in batches.values():
                for letter in (orjson.loads(r.value) for r in records if r.value):
                    if orjson.loads(letter["payload"]).get("caregiver_id") == CAREGIVER:
                        return dict(letter)
    return None


async def test_a_fix_stamped_minutes_ahead_is_refused_and_true_fixes_still_move_her(
    pipeline: FixPipeline, settings: Settings
) -> None:
    now = float(int(time.time()))
    ahead = now + 4 * 60  # within the old 5-minute skew, which kept it as her newest
    await pipeline.handle([fix(now - 20)])
    await pipeline.handle([fix(ahead, lat=53.81)])
    await pipeline.handle([fix(now - 10, lat=53.802)])

    letter = await wait_for(lambda: letter_about(settings), WITHIN_S, "its dead letter")
    assert letter["reason"] == "from_future"
    assert FixEvent.model_validate_json(letter["payload"]).ts == ahead
    counted = pipeline.rt.fix_metrics.registry.get_sample_value
    labels = {"topic": keys.FIXES, "reason": "from_future"}
    assert counted("careknot_worker_dead_letters_total", labels) == 1.0
    last = (await pipeline.rt.live.last_fixes([CAREGIVER]))[CAREGIVER]
    assert (last.ts, last.lat) == (now - 10, 53.802)
