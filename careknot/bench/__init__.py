"""``careknot bench ...``: measure hot paths; each prints its figures and writes them as JSON."""

from __future__ import annotations

import argparse

from careknot.settings import Settings


async def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "fall-to-offer":
        from careknot.bench.fall_to_offer import run

        return await run(settings, falls=args.falls, output=args.output)
    raise SystemExit(f"unknown benchmark {args.what}")
