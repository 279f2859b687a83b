"""``careknot bench gateway`` in small: a gateway of its own, with and without compression, its
clients opened, their memory read and every timed frame delivered."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from careknot.bench import gateway
from kernel import recipients
from kernel.settings import Settings

pytestmark = pytest.mark.servers


async def test_the_bench_holds_its_clients_and_times_every_frame(
    stack_settings: Settings, tmp_path: Path
) -> None:
    extra = [
        "--connections", "20", "--clients", "1", "--agencies", "2", "--dispatchers", "4",
        "--idle-seconds", "0", "--rate", "40", "--seconds", "0.5", "--sample", "6",
    ]  # fmt: skip
    args = argparse.Namespace(extra=extra, output=str(tmp_path))
    assert await gateway.run(stack_settings, args) == 0
    figures = json.loads((tmp_path / "bench-gateway.json").read_text())
    assert figures["connections"] == 20
    assert figures["p50_ms"] > 0 and figures["p99_ms"] >= figures["p50_ms"]
    assert figures["kib_per_connection"] > 0
    assert "careknot bench gateway" in figures["command"] and figures["machine"]["cpus"]
    runs = figures["runs"]
    assert set(runs) == {"deflate", "none"}
    assert runs["deflate"]["deflated"] == 20 and runs["none"]["deflated"] == 0
    for run in runs.values():
        # 20 frames round robin over 6 recipients: 2 agencies of 2 dispatchers, 4 caregivers
        assert (run["sent"], run["delivered"], run["missing"], run["refused"]) == (20, 28, 0, 0)


def test_the_clients_and_the_sample() -> None:
    plan = gateway.Plan(
        connections=10, clients=2, agencies=2, dispatchers=4, at_once=5, idle_seconds=0,
        rate=1, seconds=1, sample=4,
    )  # fmt: skip
    everyone = gateway.people(plan)
    assert [role for role, *_ in everyone] == ["dispatcher"] * 4 + ["caregiver"] * 6
    assert {r for role, _, _, r in everyone if role == "dispatcher"} == {
        recipients.dispatchers("bga0"),
        recipients.dispatchers("bga1"),
    }
    sample = gateway.sample_of(plan, everyone)
    assert sample[:2] == [recipients.dispatchers("bga0"), recipients.dispatchers("bga1")]
    assert sample[2:] == [recipients.caregiver("bgc4"), recipients.caregiver("bgc7")]
