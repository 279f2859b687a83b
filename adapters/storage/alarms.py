"""Alarms in Postgres, as people and rules move them: raised (or repeated), acknowledged,
assigned, cleared, and climbing their escalation ladder; every step appended to the event log
with who did it, and what it tells kept with it (``adapters.storage.announcements``).

An agency's ladders and contacts are kept here too, checked as they are set (a ladder by
:func:`alarms.ladder.check`, a contact as one URL Apprise knows, at a rung told at contacts), so
the command line and an API set them alike.

The decisions are :mod:`alarms.lifecycle`'s; this module locks the alarm's row (or, to raise
one, its source and kind), asks the core, and writes what it says. A partial unique index keeps
one active alarm per agency, source and kind even against two workers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import asyncpg

from adapters.notify import known, shown
from adapters.storage.announcements import Announcement, keep
from adapters.storage.incidents import event
from adapters.storage.postgres import Conn, Database, EventRow, ts
from alarms.ladder import NOTIFIED, Ladder, Rung, Step, check, spelled
from alarms.lifecycle import Alarm, Severity, acknowledged, assigned, cleared, raised

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, agency_id, patient_id, detail, source, kind, severity, raised_at, last_at, count,"
    " cleared_at, cleared_by, acknowledged_at, acknowledged_by, assignee, climbed"
)


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """An alarm as the record holds it: its id, agency, the patient it concerns (if any) and
    a line a person can act on."""

    id: str
    agency_id: str
    patient_id: str | None
    detail: str
    alarm: Alarm


Announce = Callable[[StoredAlarm], Announcement]


class UnknownAgency(LookupError):
    def __init__(self, agency_id: str) -> None:
        super().__init__(f"unknown agency {agency_id!r}")


def _epoch(value: object) -> float | None:
    return None if value is None else value.timestamp()  # type: ignore[attr-defined]


def _stored(row: asyncpg.Record) -> StoredAlarm:
    alarm = Alarm(
        source=row["source"],
        kind=row["kind"],
        severity=row["severity"],
        raised_at=row["raised_at"].timestamp(),
        last_at=row["last_at"].timestamp(),
        count=row["count"],
        cleared_at=_epoch(row["cleared_at"]),
        cleared_by=row["cleared_by"],
        acknowledged_at=_epoch(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        assignee=row["assignee"],
        climbed=row["climbed"],
    )
    return StoredAlarm(str(row["id"]), row["agency_id"], row["patient_id"], row["detail"], alarm)


class AlarmStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ raised and cleared by rules

    async def raise_alarm(
        self,
        agency_id: str,
        source: str,
        kind: str,
        severity: Severity,
        now: float,
        *,
        patient_id: str | None = None,
        detail: str = "",
        announce: Announce | None = None,
    ) -> StoredAlarm:
        """Raise the alarm, or count a repeat on the active one of its source and kind."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('alarm:' || $1 || ':' || $2 || ':' || $3))",
                agency_id,
                source,
                kind,
            )
            current = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM alarms WHERE agency_id = $1 AND source = $2"
                " AND kind = $3 AND cleared_at IS NULL FOR UPDATE",
                agency_id,
                source,
                kind,
            )
            before = None if current is None else _stored(current)
            after = raised(None if before is None else before.alarm, source, kind, severity, now)
            if before is None:
                stored = StoredAlarm(str(uuid.uuid4()), agency_id, patient_id, detail, after)
                await self._insert(conn, stored)
                what = "alarm_raised"
            else:
                stored = replace(before, alarm=after, detail=detail or before.detail)
                await self._update(conn, stored)
                what = "alarm_repeated"
            await self._audit(conn, stored, what, f"rule:{kind}", now, count=after.count)
            await keep(conn, stored.id, announce and announce(stored), now)
        return stored

    async def clear_condition(
        self, agency_id: str, source: str, kind: str, now: float, announce: Announce | None = None
    ) -> StoredAlarm | None:
        """The condition ended: its active alarm clears (None when there is none)."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM alarms WHERE agency_id = $1 AND source = $2"
                " AND kind = $3 AND cleared_at IS NULL FOR UPDATE",
                agency_id,
                source,
                kind,
            )
            if row is None:
                return None
            return await self._change(conn, _stored(row), "condition", now, announce, _clear)

    # ------------------------------------------------------------ a person's hand

    async def acknowledge(
        self, alarm_id: str, agency_id: str, actor: str, now: float, announce: Announce | None
    ) -> StoredAlarm | str:
        """She takes it: the ladder stops. The alarm, or why not (``unknown_alarm``,
        ``other_agency``)."""
        return await self._by_person(alarm_id, agency_id, actor, now, announce, _acknowledge)

    async def clear(
        self, alarm_id: str, agency_id: str, actor: str, now: float, announce: Announce | None
    ) -> StoredAlarm | str:
        return await self._by_person(alarm_id, agency_id, actor, now, announce, _clear)

    async def assign(
        self,
        alarm_id: str,
        agency_id: str,
        to: str | None,
        actor: str,
        now: float,
        announce: Announce | None,
    ) -> StoredAlarm | str:
        def to_her(alarm: Alarm, _by: str, _now: float) -> tuple[Alarm, str]:
            return assigned(alarm, to), "alarm_assigned"

        return await self._by_person(alarm_id, agency_id, actor, now, announce, to_her)

    async def _by_person(
        self,
        alarm_id: str,
        agency_id: str,
        actor: str,
        now: float,
        announce: Announce | None,
        step: _Step,
    ) -> StoredAlarm | str:
        async with self._db.transaction() as conn:
            found = await self._lock(conn, alarm_id)
            if isinstance(found, str):
                return found
            if found.agency_id != agency_id:
                return "other_agency"
            return await self._change(conn, found, actor, now, announce, step)

    # ------------------------------------------------------------ the ladder

    async def climbing(self) -> list[StoredAlarm]:
        """Alarms whose ladder may go on: active, and nobody acknowledged them."""
        rows = await self._db.pool.fetch(
            f"SELECT {_COLUMNS} FROM alarms WHERE cleared_at IS NULL"
            " AND acknowledged_at IS NULL ORDER BY raised_at"
        )
        return [_stored(r) for r in rows]

    async def climb(
        self,
        stored: StoredAlarm,
        steps: tuple[Step, ...],
        now: float,
        announce: Callable[[StoredAlarm, tuple[Step, ...]], Announcement] | None = None,
    ) -> StoredAlarm | None:
        """Take ``steps``, the next rungs of its ladder; None if someone acknowledged it,
        it cleared, or another worker climbed them first."""
        async with self._db.transaction() as conn:
            climbed = stored.alarm.climbed + len(steps)
            moved = await conn.fetchval(
                "UPDATE alarms SET climbed = $3 WHERE id = $1 AND climbed = $2"
                " AND cleared_at IS NULL AND acknowledged_at IS NULL RETURNING id",
                uuid.UUID(stored.id),
                stored.alarm.climbed,
                climbed,
            )
            if moved is None:
                return None
            after = replace(stored, alarm=replace(stored.alarm, climbed=climbed))
            for step in steps:
                await self._audit(conn, after, "alarm_climbed", "ladder", now, rung=step.rung)
            await keep(conn, after.id, announce and announce(after, steps), now)
        return after

    async def ladders(self, agency_id: str) -> dict[Severity, Ladder]:
        """The agency's own ladders, by severity (the defaults stand for the rest)."""
        rows = await self._db.pool.fetch(
            "SELECT severity, steps FROM escalation_ladders WHERE agency_id = $1", agency_id
        )
        return {
            r["severity"]: Ladder(
                tuple(Step(s["rung"], float(s["after_s"])) for s in json.loads(r["steps"]))
            )
            for r in rows
        }

    async def set_ladder(self, agency_id: str, severity: Severity, ladder: Ladder) -> None:
        """The agency's ladder for the severity from now on; ValueError if it may not be
        (:func:`alarms.ladder.check`), :class:`UnknownAgency`."""
        check(severity, ladder)
        steps = json.dumps([{"rung": s.rung, "after_s": s.after_s} for s in ladder.steps])
        try:
            await self._db.pool.execute(
                "INSERT INTO escalation_ladders(agency_id, severity, steps) VALUES ($1, $2, $3)"
                " ON CONFLICT (agency_id, severity) DO UPDATE SET steps = EXCLUDED.steps",
                agency_id,
                severity,
                steps,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAgency(agency_id) from None
        log.info("agency %s: %s ladder %s", agency_id, severity, spelled(ladder))

    async def agency_known(self, agency_id: str) -> bool:
        found = await self._db.pool.fetchval("SELECT 1 FROM agencies WHERE id = $1", agency_id)
        return found is not None

    async def contacts(self, agency_id: str) -> Mapping[Rung, list[str]]:
        """Where each rung beyond the dispatchers is told (Apprise URLs), by rung."""
        rows = await self._db.pool.fetch(
            "SELECT rung, url FROM alarm_contacts WHERE agency_id = $1 ORDER BY rung, url",
            agency_id,
        )
        out: dict[Rung, list[str]] = {}
        for r in rows:
            out.setdefault(r["rung"], []).append(r["url"])
        return out

    async def add_contact(self, agency_id: str, rung: Rung, url: str) -> bool:
        """Tell ``url`` at the agency's ``rung`` from now on; whether it is new. ValueError for
        a rung not told at contacts or what is not one URL Apprise knows,
        :class:`UnknownAgency`."""
        _notified(rung)
        if not known(url):
            raise ValueError(f"not one URL of a service Apprise knows: {shown(url)}")
        try:
            added = await self._db.pool.fetchval(
                "INSERT INTO alarm_contacts(agency_id, rung, url) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                agency_id,
                rung,
                url,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAgency(agency_id) from None
        return bool(added)

    async def remove_contact(self, agency_id: str, rung: Rung, url: str) -> str | None:
        """Stop telling the contact at the agency's ``rung``: ``url`` as it was added, or as
        :func:`adapters.notify.shown` shows it (credentials masked) where that names one
        contact alone. The URL removed, or None when the rung has no such contact; ValueError
        when the masked form names several."""
        _notified(rung)
        urls = (await self.contacts(agency_id)).get(rung, [])
        matching = [url] if url in urls else [u for u in urls if shown(u) == url]
        if len(matching) > 1:
            raise ValueError(f"{url} names {len(matching)} contacts: give the URL whole")
        if not matching:
            return None
        await self._db.pool.execute(
            "DELETE FROM alarm_contacts WHERE agency_id = $1 AND rung = $2 AND url = $3",
            agency_id,
            rung,
            matching[0],
        )
        return matching[0]

    async def get(self, alarm_id: str) -> StoredAlarm | None:
        try:
            aid = uuid.UUID(alarm_id)
        except ValueError:
            return None
        row = await self._db.pool.fetchrow(f"SELECT {_COLUMNS} FROM alarms WHERE id = $1", aid)
        return None if row is None else _stored(row)

    async def of_agency(
        self,
        agency_id: str,
        *,
        statuses: Sequence[str] = (),
        kind: str | None = None,
        patient_id: str | None = None,
        limit: int,
        before: tuple[float, str] | None = None,
    ) -> list[StoredAlarm]:
        """A page of the agency's alarms, newest first: raised before ``before`` (a raising
        time and an id, the last of the page before), of any of ``statuses`` (all when empty),
        of ``kind`` and of ``patient_id`` where given."""
        rows = await self._db.pool.fetch(
            f"SELECT {_COLUMNS} FROM alarms WHERE agency_id = $1"
            " AND (cardinality($2::text[]) = 0 OR (CASE WHEN cleared_at IS NULL THEN 'active_'"
            " ELSE 'cleared_' END || CASE WHEN acknowledged_at IS NULL THEN 'unack' ELSE 'ack'"
            " END) = ANY($2::text[])) AND ($3::text IS NULL OR kind = $3)"
            " AND ($4::text IS NULL OR patient_id = $4)"
            " AND ($5::timestamptz IS NULL OR (raised_at, id) < ($5, $6::uuid))"
            " ORDER BY raised_at DESC, id DESC LIMIT $7",
            agency_id,
            list(statuses),
            kind,
            patient_id,
            None if before is None else ts(before[0]),
            None if before is None else uuid.UUID(before[1]),
            limit,
        )
        return [_stored(r) for r in rows]

    async def history(self, stored: StoredAlarm) -> list[EventRow]:
        """What happened to the alarm, oldest first: raised, repeated, acknowledged, assigned,
        climbed, cleared, each with who did it (the event log's rows, its agency's alone; what
        dispatchers asked of it is the command log's)."""
        rows = await self._db.pool.fetch(
            "SELECT event_key, agency_id, kind, actor, at, payload FROM events"
            " WHERE payload->>'alarm_id' = $1 AND agency_id = $2 AND kind LIKE 'alarm\\_%'"
            " ORDER BY seq",
            stored.id,
            stored.agency_id,
        )
        return [
            EventRow(
                r["event_key"],
                r["agency_id"],
                None,
                r["kind"],
                r["actor"],
                r["at"].timestamp(),
                json.loads(r["payload"]),
            )
            for r in rows
        ]

    async def active_kinds(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """The kinds of the active alarms of each of ``sources`` that has one."""
        rows = await self._db.pool.fetch(
            "SELECT source, kind FROM alarms WHERE source = ANY($1::text[]) AND cleared_at IS NULL",
            list(sources),
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["source"], set()).add(r["kind"])
        return out

    # ------------------------------------------------------------ rows

    async def _lock(self, conn: Conn, alarm_id: str) -> StoredAlarm | str:
        try:
            aid = uuid.UUID(alarm_id)
        except ValueError:
            return "unknown_alarm"
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM alarms WHERE id = $1 FOR UPDATE", aid)
        return "unknown_alarm" if row is None else _stored(row)

    async def _change(
        self,
        conn: Conn,
        before: StoredAlarm,
        actor: str,
        now: float,
        announce: Announce | None,
        step: _Step,
    ) -> StoredAlarm:
        after_alarm, what = step(before.alarm, actor, now)
        after = replace(before, alarm=after_alarm)
        if after_alarm != before.alarm:
            await self._update(conn, after)
            await self._audit(conn, after, what, actor, now)
            await keep(conn, after.id, announce and announce(after), now)
        return after

    async def _insert(self, conn: Conn, s: StoredAlarm) -> None:
        a = s.alarm
        await conn.execute(
            "INSERT INTO alarms(id, agency_id, patient_id, detail, source, kind, severity,"
            " raised_at, last_at, count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            uuid.UUID(s.id),
            s.agency_id,
            s.patient_id,
            s.detail,
            a.source,
            a.kind,
            a.severity,
            ts(a.raised_at),
            ts(a.last_at),
            a.count,
        )

    async def _update(self, conn: Conn, s: StoredAlarm) -> None:
        a = s.alarm
        await conn.execute(
            "UPDATE alarms SET severity = $2, last_at = $3, count = $4, cleared_at = $5,"
            " cleared_by = $6, acknowledged_at = $7, acknowledged_by = $8, assignee = $9,"
            " detail = $10 WHERE id = $1",
            uuid.UUID(s.id),
            a.severity,
            ts(a.last_at),
            a.count,
            None if a.cleared_at is None else ts(a.cleared_at),
            a.cleared_by,
            None if a.acknowledged_at is None else ts(a.acknowledged_at),
            a.acknowledged_by,
            a.assignee,
            s.detail,
        )

    async def _audit(
        self, conn: Conn, s: StoredAlarm, what: str, actor: str, now: float, **more: object
    ) -> None:
        said = ",".join(f"{k}={v}" for k, v in sorted(more.items()))
        key = f"{s.id}:{what}:{now!r}:{s.alarm.count}:{s.alarm.climbed}:{said}"
        row = event(key, s.agency_id, None, what, actor, now, alarm_id=s.id, **more)
        row = replace(row, payload={**row.payload, "source": s.alarm.source, "kind": s.alarm.kind})
        await self._db.append_events(conn, [row])


_Step = Callable[[Alarm, str, float], tuple[Alarm, str]]


def _notified(rung: str) -> None:
    if rung not in NOTIFIED:
        raise ValueError(
            f"rung {rung!r} has no contacts: {', '.join(NOTIFIED)} are told at contacts,"
            " the dispatchers on their console"
        )


def _clear(alarm: Alarm, by: str, now: float) -> tuple[Alarm, str]:
    return cleared(alarm, by, now), "alarm_cleared"


def _acknowledge(alarm: Alarm, by: str, now: float) -> tuple[Alarm, str]:
    return acknowledged(alarm, by, now), "alarm_acknowledged"
