"""``careknot bench dispatch`` on a small country: it writes the figures the issue asks for, and
the three ways of searching agree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from careknot.bench import dispatch
from kernel.settings import Settings

pytestmark = pytest.mark.servers


async def test_the_bench_writes_its_figures(settings: Settings, tmp_path: Path) -> None:
    extra = ["--caregivers", "3000", "--agencies", "3", "--searches", "60", "--fall-load", "0"]
    args = argparse.Namespace(extra=extra, output=str(tmp_path), falls=0)
    assert await dispatch.run(settings, args) == 0
    figures = json.loads((tmp_path / "dispatch.json").read_text())
    for key in ("search_p50_ms", "search_p99_ms", "geosearch_p99_ms"):
        assert figures[key] > 0
    assert figures["agreement"]["search_vs_geosearch"] == 1.0
    assert figures["agreement"]["search_vs_redis_search"] == 1.0  # the copy answers as Redis
    assert figures["search_synced_p99_ms"] > 0 and figures["redis_search_p99_ms"] > 0
    assert figures["update_fixes_per_s"] > 0
    assert ("postgis_p99_ms" in figures) and ("speedup_vs_postgis" in figures)
    if figures["postgis_p99_ms"] is not None:
        assert figures["speedup_vs_postgis"] > 0
    assert figures.get("fall_to_offer_p99_ms") is None  # part (2) was not asked for


async def test_part_two_measures_falls_under_load(migrated: Settings, tmp_path: Path) -> None:
    """Part (2) in small: a few falls through the whole system while phones publish."""
    extra = ["--caregivers", "500", "--agencies", "2", "--searches", "10", "--fall-load", "300"]
    args = argparse.Namespace(extra=extra, output=str(tmp_path), falls=3)
    assert await dispatch.run(migrated, args) == 0
    figures = json.loads((tmp_path / "dispatch.json").read_text())
    assert figures["fall_to_offer"]["falls"] == 3  # however slow the machine
    assert 0 < figures["fall_to_offer_p50_ms"] <= figures["fall_to_offer_p99_ms"]
    falls = figures["fall_to_offer"]
    assert 0 < falls["fall_to_wave_p50_ms"] < falls["fall_to_offer_p50_ms"]  # the wave began first
    assert 0 < falls["wave_to_offer_p50_ms"] < falls["fall_to_offer_p50_ms"]
    load = figures["fall_to_offer"]["load"]
    assert load["rate"] == 300 and load["published"] > 0
