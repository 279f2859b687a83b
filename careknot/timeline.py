"""An incident's whole timeline, rebuilt from the append-only event log.

:func:`render` is pure: events in, lines out (time, seconds since the incident opened, what
happened, who did it, the details). :func:`show` reads ``Database.incident_events`` and
prints them; ``careknot incident timeline ID`` calls it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.storage.postgres import Database, EventRow
from kernel.settings import Settings

DETAIL_ORDER = ("caregiver_id", "offer_id", "wave", "distance_m", "eta_s", "reason")


def render(events: Sequence[EventRow]) -> list[str]:
    """One line per event, oldest first, timed from the first event."""
    if not events:
        return []
    start = events[0].at
    return [_line(e, e.at - start) for e in events]


def _line(e: EventRow, since_s: float) -> str:
    clock = datetime.fromtimestamp(e.at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    since = f"+{since_s:.1f}s"
    return f"{clock}Z {since:>9}  {e.kind:<20} {e.actor:<28} {_details(e.payload)}".rstrip()


def _details(payload: dict[str, object]) -> str:
    keys = [k for k in DETAIL_ORDER if k in payload]
    keys += sorted(k for k in payload if k not in DETAIL_ORDER)
    return " ".join(f"{k}={payload[k]}" for k in keys)


async def show(settings: Settings, incident_id: str) -> int:
    """Print the timeline; 1 (and a message) when the id is malformed or has no events."""
    try:
        uuid.UUID(incident_id)
    except ValueError:
        print(f"not an incident id: {incident_id}")
        return 1
    async with Database(settings) as db:
        events = await db.incident_events(incident_id)
    if not events:
        print(f"no events for incident {incident_id}")
        return 1
    print(f"incident {incident_id} ({events[0].agency_id}): {len(events)} events")
    for line in render(events):
        print(line)
    return 0
