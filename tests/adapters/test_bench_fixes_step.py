"""``careknot bench fixes-step`` in small: the agent's step over the road load, every fix kept."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from careknot.bench import fixes_step
from kernel.settings import Settings

pytestmark = pytest.mark.servers


async def test_the_bench_times_the_step_and_loses_nothing(
    migrated: Settings, tmp_path: Path
) -> None:
    extra = ["--caregivers", "300", "--steps", "4", "--batch", "200", "--per-message", "50"]
    args = argparse.Namespace(extra=extra, output=str(tmp_path))
    assert await fixes_step.run(migrated, args) == 0
    figures = json.loads((tmp_path / "bench-fixes-step.json").read_text())
    assert figures["lost"] == 0
    assert figures["fixes"] == 300 * 4 - 400  # all but the warm-up batches' fixes are timed
    assert figures["cpu_us_per_fix"] > 0 and figures["wall_us_per_fix"] > 0


def test_the_load_is_packed_as_ingest_packs_it() -> None:
    values = fixes_step.values(["a", "b", "c"], steps=2, per_message=4, now=1_800_000_000.0)
    fixes = [f for v in values for f in json.loads(v)]
    assert [len(json.loads(v)) for v in values] == [4, 2]
    assert [f["caregiver_id"] for f in fixes] == ["a", "b", "c"] * 2
    assert [f["ts"] for f in fixes[::3]] == [fixes[0]["ts"], fixes[0]["ts"] + 10]
