"""``careknot retention run``: the retention settings applied once (the fixes worker does it
every hour)."""

from __future__ import annotations

import argparse
import time

from adapters.storage.postgres import Database
from adapters.storage.retention import apply_retention
from kernel.settings import Settings


async def run(settings: Settings, args: argparse.Namespace) -> int:
    async with Database(settings) as db:
        pruned = await apply_retention(db, settings, time.time())
    print(
        f"deleted {pruned.fixes} fixes older than {settings.fix_history_keep_days:g} days,"
        f" {pruned.vitals_raw} raw vitals older than a day; dead letters are kept"
        f" {settings.deadletter_keep_days:g} days by their topic's retention.ms"
    )
    return 0
