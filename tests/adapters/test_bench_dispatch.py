"""``careknot bench dispatch`` on a small country: it writes the figures the issue asks for, and
the three ways of searching agree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from careknot.bench import dispatch
from careknot.settings import Settings

pytestmark = pytest.mark.servers


async def test_the_bench_writes_its_figures(settings: Settings, tmp_path: Path) -> None:
    extra = ["--caregivers", "3000", "--agencies", "3", "--searches", "60"]
    args = argparse.Namespace(extra=extra, output=str(tmp_path))
    assert await dispatch.run(settings, args) == 0
    figures = json.loads((tmp_path / "dispatch.json").read_text())
    for key in ("search_p50_ms", "search_p99_ms", "geosearch_p99_ms"):
        assert figures[key] > 0
    assert figures["agreement"]["search_vs_geosearch"] == 1.0
    assert figures["update_fixes_per_s"] > 0
    assert ("postgis_p99_ms" in figures) and ("speedup_vs_postgis" in figures)
    if figures["postgis_p99_ms"] is not None:
        assert figures["speedup_vs_postgis"] > 0
