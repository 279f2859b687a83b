"""``careknot bench ...``: measure hot paths; each prints its figures and writes them as JSON.

Each benchmark is a module here with ``async def run(settings, args) -> int``; ``args.output``
is the directory to write to and ``args.extra`` the rest of the command line, for the
benchmark's own options.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable

from kernel.settings import Settings

BENCHMARKS = {
    "fall-to-offer": "careknot.bench.fall_to_offer",
    "geofence": "careknot.bench.geofence",
    "dispatch": "careknot.bench.dispatch",
    "ingest": "careknot.bench.ingest",
    "fixes-step": "careknot.bench.fixes_step",
}


async def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.what])
    run: Callable[[Settings, argparse.Namespace], Awaitable[int]] = module.run
    return await run(settings, args)
