"""One place for every refusal: a fix the fixes worker's quality screen drops (at null island, too
old, too inaccurate, too soon after the last, an impossible jump) is dead-lettered with its reason
and counted, beside the fixes it accepts; a duplicate or a late fix is no refusal (the history
keeps it), nor is an accepted one.

The fixes worker's step (:class:`streams.fix_flow.FixPipeline`, as its agent runs it) against
the real Redis, Postgres and Kafka, in a namespace of the module's own.
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

AGENCY = f"fr-{uuid.uuid4().hex[:8]}"
NOW = float(int(time.time()))
WITHIN_S = 30.0


@pytest.fixture
async def pipeline(settings: Settings, first_migration: list[int]) -> AsyncIterator[FixPipeline]:
    rt = await Runtime(settings, dispatching=False).ready()
    yield FixPipeline(rt, settings)
    await rt.close()


def fix(caregiver: str, ago_s: float, **changes: Any) -> FixEvent:
    ts = NOW - ago_s
    fields = {"lat": 53.8, "lon": -1.55, "acc": 8.0, **changes}
    return FixEvent(
        event_id=f"{caregiver}:{ts}",
        agency_id=AGENCY,
        caregiver_id=caregiver,
        ts=ts,
        received_at=NOW,
        **fields,
    )


async def letters_about(settings: Settings, caregivers: set[str]) -> dict[str, dict[str, Any]]:
    """The dead letters of the fixes of ``caregivers``, by caregiver."""
    found: dict[str, dict[str, Any]] = {}
    async with kafka_reader(settings, keys.DEADLETTER) as reader:
        while batches := await reader.getmany(timeout_ms=500):
            for records in batches.values():
                for letter in (orjson.loads(r.value) for r in records if r.value):
                    payload = orjson.loads(letter["payload"])
                    if payload.get("caregiver_id") in caregivers:
                        found[payload["caregiver_id"]] = letter
    return found


async def test_the_fixes_the_screen_drops_are_dead_lettered_with_their_reasons(
    pipeline: FixPipeline, settings: Settings
) -> None:
    cg = {name: f"{AGENCY}-{name}" for name in ("good", "island", "old", "blurred", "jumper")}
    batch = [
        fix(cg["good"], 20),
        fix(cg["good"], 20),  # a duplicate: the history has it, no refusal
        fix(cg["island"], 10, lat=0.0, lon=0.0),
        fix(cg["old"], 3 * 86_400),
        fix(cg["blurred"], 10, acc=2_500.0),
        fix(cg["jumper"], 30),
        fix(cg["jumper"], 29, lat=54.8),  # 111 km in a second
    ]
    value = b"[" + b",".join(f.model_dump_json().encode() for f in batch) + b"]"

    await pipeline.handle([value])

    refused = {cg[n] for n in ("island", "old", "blurred", "jumper")}

    async def all_there() -> dict[str, dict[str, Any]] | None:
        found = await letters_about(settings, set(cg.values()))
        return found if found.keys() >= refused else None

    letters = await wait_for(all_there, WITHIN_S, "the dropped fixes' dead letters")
    assert {who: letter["reason"] for who, letter in letters.items()} == {
        cg["island"]: "null_island",
        cg["old"]: "too_old",
        cg["blurred"]: "poor_accuracy",
        cg["jumper"]: "impossible_jump",
    }
    assert {letter["source"] for letter in letters.values()} == {settings.keys.topic(keys.FIXES)}
    jumped = FixEvent.model_validate_json(letters[cg["jumper"]]["payload"])
    assert (jumped.lat, jumped.ts) == (54.8, NOW - 29)  # the fix itself: it can be replayed
    counted = pipeline.rt.fix_metrics.registry.get_sample_value
    labels = {"topic": keys.FIXES, "reason": "null_island"}
    assert counted("careknot_worker_dead_letters_total", labels) == 1.0
    assert (await pipeline.rt.live.last_fixes([cg["good"]]))[cg["good"]].ts == NOW - 20
