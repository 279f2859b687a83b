"""What is kept how long in Postgres: caregivers' fixes beyond ``fix_history_keep_days`` are
deleted, in chunks so that no one statement holds the table long; raw vitals beyond their day
(``adapters.storage.vitals.RAW_WINDOW_S``: the devices worker prunes them too). Dead letters
live on Kafka, where the topic's ``retention.ms`` bounds them (``adapters.kafka``)."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.storage.postgres import Database
from adapters.storage.vitals import RAW_WINDOW_S, VitalsStore
from kernel.settings import Settings

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows one run deleted, by table."""

    fixes: int
    vitals_raw: int


async def prune_fixes(db: Database, before: float) -> int:
    """Delete the fixes taken before ``before``; how many."""
    return await db.delete_older("fixes", before)


async def apply_retention(db: Database, settings: Settings, now: float) -> Pruned:
    """Every retention setting applied once, as of ``now``."""
    fixes = await prune_fixes(db, now - settings.fix_history_keep_days * DAY_S)
    vitals_raw = await VitalsStore(db).prune(now - RAW_WINDOW_S)
    return Pruned(fixes, vitals_raw)
