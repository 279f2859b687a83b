"""``careknot alarms ladder|contact``: an agency's escalation ladders, and the contacts (Apprise
URLs) its rungs beyond the dispatchers are told at.

``ladder AGENCY SEVERITY RUNG:SECONDS...`` sets the agency's ladder for a severity
(``dispatchers:0 on_call:20 external:40``); ``ladder AGENCY [SEVERITY]`` shows each severity's,
the default where the agency set none. ``contact add|remove AGENCY RUNG URL`` and ``contact list
AGENCY``: URLs are shown with their credentials masked, and ``remove`` takes a URL as it was
added or as ``list`` shows it. The checks are the store's (``adapters.storage.alarms``) and the
core's (``alarms.ladder``): what they refuse is said on stderr, with exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from adapters.notify import shown, urls_in
from adapters.storage.alarms import AlarmStore, UnknownAgency
from adapters.storage.postgres import Database
from alarms.ladder import NOTIFIED, Rung, check, ladder_for, parse_ladder, spelled
from alarms.lifecycle import SEVERITIES, Severity
from kernel.settings import Settings

REFUSED = 1


async def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.what == "ladder":
            return await _ladder(settings, args)
        return await _contact(settings, args)
    except (ValueError, UnknownAgency) as exc:
        print(f"careknot alarms: {exc}", file=sys.stderr)
        return REFUSED


async def _ladder(settings: Settings, args: argparse.Namespace) -> int:
    severity: Severity | None = args.severity
    if args.steps:
        assert severity is not None  # argparse fills the severity before the steps
        ladder = check(severity, parse_ladder(args.steps))  # refused before any connection
        async with Database(settings) as db:
            await AlarmStore(db).set_ladder(args.agency, severity, ladder)
        print(f"{args.agency}: {severity} {spelled(ladder)}")
        return 0
    async with Database(settings) as db:
        store = AlarmStore(db)
        if not await store.agency_known(args.agency):
            raise UnknownAgency(args.agency)
        own = await store.ladders(args.agency)
    for s in [severity] if severity else SEVERITIES:
        whose = "own" if s in own else "default"
        print(f"{s:<9} {spelled(ladder_for(s, own)):<40} ({whose})")
    return 0


async def _contact(settings: Settings, args: argparse.Namespace) -> int:
    async with Database(settings) as db:
        store = AlarmStore(db)
        if args.action == "add":
            added = await store.add_contact(args.agency, args.rung, args.url)
            what = "added" if added else "already there"
            print(f"{args.agency}: {args.rung} {shown(args.url)} {what}")
            return 0
        if args.action == "remove":
            removed = await store.remove_contact(args.agency, args.rung, args.url)
            if removed is None:
                print(f"{args.agency}: {args.rung} has no contact {args.url}", file=sys.stderr)
                return REFUSED
            print(f"{args.agency}: {args.rung} {shown(removed)} removed")
            return 0
        if not await store.agency_known(args.agency):
            raise UnknownAgency(args.agency)
        contacts = await store.contacts(args.agency)
    system: dict[Rung, tuple[str, ...]] = {
        settings.alarm_notify_rung: urls_in(settings.alarm_notify_url)
    }
    for rung in NOTIFIED:
        for url in contacts.get(rung, []):
            print(f"{rung:<9} {shown(url)}")
        for url in system.get(rung, ()):
            print(f"{rung:<9} {shown(url)} (every agency's: CAREKNOT_ALARM_NOTIFY_URL)")
    if not any(contacts.values()) and not any(system.values()):
        print(f"{args.agency}: no contacts (the dispatchers are told on their console alone)")
    return 0
