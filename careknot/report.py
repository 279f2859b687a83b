"""``careknot report visits``: caregiver hours and visit punctuality for an agency over a period.

The report itself is :mod:`visits.report`'s (pure: visit records in, CSV or JSON out);
:func:`report_visits` reads the records from Postgres.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kernel.settings import Settings
from visits.report import Format, render, summarise

__all__ = ["parse_time", "render", "report_visits", "summarise"]


def parse_time(text: str) -> float:
    """An ISO 8601 date or time; without a zone it is UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def report_visits(
    settings: Settings, agency_id: str, start: str, end: str, fmt: Format
) -> str:
    import redis.asyncio as aioredis

    from adapters.storage.postgres import Database
    from adapters.storage.visit_store import VisitStore

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with Database(settings) as db:
            store = VisitStore(db, redis, settings)
            records = await store.in_period(agency_id, parse_time(start), parse_time(end))
    finally:
        await redis.aclose()
    return render(records, fmt, {"agency": agency_id, "from": start, "to": end})
