"""``careknot routines show|review``: what each home's routine watch knows, for the people who
look after her and for an audit.

``show PATIENT`` lists the home's model versions (when each was fitted, the window of days it
saw, how many days and events, the dispatchers' false alarms it learnt from) and its routine
alarms' episodes (when, what, since when, the explanation the dispatchers read, whether it asked
for an incident, and its label). ``review AGENCY [--days N]`` lists the drifts over days found in
the agency's homes in the last N days (7), for care review: they are not alarms.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from adapters.storage.postgres import Database
from adapters.storage.routines import RoutineStore
from kernel.settings import Settings

DAY_S = 86_400.0


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    async with Database(settings) as db:
        store = RoutineStore(db)
        if args.what == "review":
            return await _review(store, args.agency, args.days)
        return await _show(store, args.patient)


async def _show(store: RoutineStore, patient_id: str) -> int:
    versions = await store.versions(patient_id)
    episodes = await store.episodes(patient_id)
    print(f"{patient_id}: {len(versions)} model versions kept, {len(episodes)} alarm episodes")
    for v in versions:
        print(
            f"  v{v.version} {v.model} fitted {_at(v.trained_at)} on {_at(v.window_from)}"
            f" .. {_at(v.window_to)}: {v.days} days, {v.events} events,"
            f" {v.false_alarms} false alarms learnt from"
        )
    for e in episodes:
        asked = ", incident asked" if e.incident_asked else ""
        label = f", labelled {e.label}" if e.label else ""
        print(f"  {_at(e.raised_at)} {e.kind} (since {_at(e.start)}){asked}{label}")
        print(f"    {e.explanation}")
    return 0


async def _review(store: RoutineStore, agency_id: str, days: float) -> int:
    reviews = await store.reviews(agency_id, time.time() - days * DAY_S)
    print(f"{agency_id}: {len(reviews)} drifts for care review in the last {days:g} days")
    for r in reviews:
        print(f"  {_at(r.found_at)} {r.patient_id} {r.measure}: {r.explanation}")
    return 0
