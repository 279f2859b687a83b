"""Alarms a person must acknowledge, kept by the dispatch worker: raised and cleared by what
happens to incidents, acknowledged and cleared by dispatchers, and their escalation ladders
climbed by the offer timer while nobody acknowledges them.

The decisions are ``alarms.lifecycle``'s and ``alarms.ladder``'s; the atomic changes
``adapters.storage.alarms``'s; each change's announcement (the ``alarm`` frame to the agency's
dispatchers, notifications to the rungs beyond them) goes through the transactional outbox like
every dispatch step's. A rung beyond the dispatchers is told at the agency's contacts for it and,
at ``CAREKNOT_ALARM_NOTIFY_RUNG``, at the system's own ``CAREKNOT_ALARM_NOTIFY_URL`` too (every
agency's alarms: an operator's own endpoint, ``json://`` for a JSON POST).

An escalated incident is a critical alarm (``incident_escalated``, source ``incident:{id}``)
until a caregiver accepts it or a dispatcher assigns or resolves it. The timer also raises the
alarm of an escalated incident that has none (a worker that stopped between the two).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from adapters.notify import urls_in
from adapters.storage.alarms import AlarmStore, Announce, StoredAlarm
from adapters.storage.announcements import Announcement, Notification
from adapters.storage.commands import CommandLog
from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentRow
from adapters.storage.postgres import Database
from adapters.storage.routines import RoutineStore
from alarms.ladder import Ladder, Rung, Step, ladder_for
from alarms.lifecycle import Severity
from alarms.rules import Clear, rules_for, source_of
from kernel import recipients
from kernel.contracts import AlarmCommand, AlarmFrame, CommandResultFrame
from kernel.settings import Settings

log = logging.getLogger(__name__)

ESCALATED = "incident_escalated"
FALSE_ALARM = "false_alarm"


def incident_source(incident_id: str) -> str:
    return f"incident:{incident_id}"


class AlarmKeeper:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: RedisConnection,
        clock: Callable[[], float],
    ) -> None:
        self._store = AlarmStore(db)
        self._routines = RoutineStore(db)
        self._commands = CommandLog(db)
        self._announcements = redis.announcements(db, settings)
        self._outbox = redis.outbox(settings)
        self._clock = clock
        self._system: dict[Rung, tuple[str, ...]] = {
            settings.alarm_notify_rung: urls_in(settings.alarm_notify_url)
        }
        """The system's own contacts, told at their rung beside every agency's."""
        self.refused: Counter[str] = Counter()

    # ------------------------------------------------------------ rules

    async def incident_escalated(self, incident: IncidentRow, reason: str) -> StoredAlarm:
        now = self._clock()
        stored = await self._store.raise_alarm(
            incident.agency_id,
            incident_source(incident.id),
            ESCALATED,
            "critical",
            now,
            patient_id=incident.patient_id,
            detail=f"{incident.kind}: no caregiver has accepted ({reason})",
            announce=self._frame,
        )
        await self._tell(stored.id)
        return stored

    async def incident_settled(self, incident: IncidentRow) -> None:
        """A caregiver is on her way, or a dispatcher resolved it: its alarm clears."""
        stored = await self._store.clear_condition(
            incident.agency_id, incident_source(incident.id), ESCALATED, self._clock(), self._frame
        )
        if stored is not None:
            await self._tell(stored.id)

    async def device_event(
        self, agency_id: str, patient_id: str, device_id: str, kind: str
    ) -> None:
        """What a device event raises or clears (``alarms.rules``), if anything."""
        for rule in rules_for(kind):
            source = source_of(rule.on, device_id, patient_id)
            if isinstance(rule, Clear):
                await self.clear(agency_id, source, rule.kind)
            else:
                await self.raise_(
                    agency_id, source, rule.kind, rule.severity, patient_id, rule.detail
                )

    async def raise_(
        self,
        agency_id: str,
        source: str,
        kind: str,
        severity: Severity,
        patient_id: str | None,
        detail: str,
    ) -> StoredAlarm:
        """Raise an alarm (or count a repeat on the active one) and tell the dispatchers."""
        stored = await self._store.raise_alarm(
            agency_id,
            source,
            kind,
            severity,
            self._clock(),
            patient_id=patient_id,
            detail=detail,
            announce=self._frame,
        )
        await self._tell(stored.id)
        return stored

    async def clear(self, agency_id: str, source: str, kind: str) -> None:
        """Its condition ended: the active alarm of the source and kind clears, if any."""
        stored = await self._store.clear_condition(
            agency_id, source, kind, self._clock(), self._frame
        )
        if stored is not None:
            await self._tell(stored.id)

    # ------------------------------------------------------------ a dispatcher's hand

    async def on_command(self, cmd: AlarmCommand) -> str:
        """Her acknowledge, clear or false alarm (a clear whose label the alarm's routine
        model learns from); the outcome (``done`` or why not) goes to her agency."""
        now = self._clock()
        step = {
            "acknowledge": self._store.acknowledge,
            "clear": self._store.clear,
            "false_alarm": self._false_alarm,
        }.get(cmd.command)
        if step is None:
            done: StoredAlarm | str = "not_an_alarm_command"
        else:
            done = await step(cmd.alarm_id, cmd.agency_id, cmd.actor, now, self._frame)
        if isinstance(done, StoredAlarm):
            await self._tell(done.id)
            await self.told(cmd, "done")
            return "done"
        await self.told(cmd, done)
        return done

    async def _false_alarm(
        self, alarm_id: str, agency_id: str, actor: str, now: float, announce: Announce | None
    ) -> StoredAlarm | str:
        done = await self._store.clear(alarm_id, agency_id, actor, now, announce)
        if isinstance(done, StoredAlarm):
            await self._routines.label(alarm_id, FALSE_ALARM, actor, now)
        return done

    async def told(self, cmd: AlarmCommand, outcome: str) -> None:
        """Tell her agency's dispatchers the outcome of her command (``done``, or the reason
        it was refused, counted), and keep it in the command log (what the HTTP API reads
        back)."""
        if outcome != "done":
            self.refused[outcome] += 1
        subject = {"command": cmd.command, "alarm_id": cmd.alarm_id}
        await self._commands.decided(
            cmd.agency_id, cmd.command_id, cmd.actor, subject, outcome, self._clock()
        )
        result = CommandResultFrame(
            command_id=cmd.command_id,
            command=cmd.command,
            alarm_id=cmd.alarm_id,
            dispatcher_id=cmd.dispatcher_id,
            outcome="done" if outcome == "done" else "refused",
            reason=None if outcome == "done" else outcome,
            at=self._clock(),
        )
        await self._outbox.send([(recipients.dispatchers(cmd.agency_id), result)])

    async def get(self, alarm_id: str) -> StoredAlarm | None:
        return await self._store.get(alarm_id)

    # ------------------------------------------------------------ the ladder

    async def tick(self) -> None:
        """Climb every ladder whose next rungs fell due (each agency's ladders read once)."""
        now = self._clock()
        ladders: dict[str, dict[Severity, Ladder]] = {}
        for stored in await self._store.climbing():
            if stored.agency_id not in ladders:
                ladders[stored.agency_id] = await self._store.ladders(stored.agency_id)
            own = ladders[stored.agency_id]
            due = ladder_for(stored.alarm.severity, own).due(stored.alarm, now)
            if not due:
                continue
            contacts = with_system(await self._store.contacts(stored.agency_id), self._system)
            told = partial(self._climbed, contacts=contacts)
            climbed = await self._store.climb(stored, due, now, told)
            if climbed is not None:
                log.warning("alarm %s climbed to %s", climbed.id, due[-1].rung)
                await self._tell(climbed.id)

    def _climbed(
        self,
        stored: StoredAlarm,
        steps: tuple[Step, ...],
        *,
        contacts: Mapping[Rung, Sequence[str]],
    ) -> Announcement:
        """The alarm frame again, and each rung beyond the dispatchers notified."""
        notes = [
            Notification(tuple(contacts[s.rung]), _title(stored), _body(stored))
            for s in steps
            if s.rung != "dispatchers" and contacts.get(s.rung)
        ]
        return Announcement(self._frame(stored).frames, notifications=notes)

    # ------------------------------------------------------------ telling

    def _frame(self, stored: StoredAlarm) -> Announcement:
        a = stored.alarm
        frame = AlarmFrame(
            alarm_id=stored.id,
            source=a.source,
            kind=a.kind,
            severity=a.severity,
            status=a.status,
            count=a.count,
            patient_id=stored.patient_id,
            detail=stored.detail,
            raised_at=a.raised_at,
            acknowledged_by=a.acknowledged_by,
            assignee=a.assignee,
            climbed=a.climbed,
            at=self._clock(),
        )
        body = frame.model_dump_json().encode()
        return Announcement([(recipients.dispatchers(stored.agency_id), body)])

    async def _tell(self, alarm_id: str) -> None:
        await self._announcements.deliver([alarm_id], self._clock())

    @property
    def notifications_failed(self) -> int:
        """Notifications through Apprise that some URL did not take (counted, never retried
        here: the ladder goes on)."""
        return self._announcements.notifications_failed


def with_system(
    agency: Mapping[Rung, Sequence[str]], system: Mapping[Rung, Sequence[str]]
) -> dict[Rung, tuple[str, ...]]:
    """The agency's contacts by rung, with the system's own added at theirs (each URL once)."""
    rungs = [*agency, *(r for r in system if r not in agency)]
    return {
        r: tuple(dict.fromkeys([*agency.get(r, ()), *system.get(r, ())]))
        for r in rungs
        if agency.get(r) or system.get(r)
    }


def _title(stored: StoredAlarm) -> str:
    return f"CareKnot {stored.alarm.severity} alarm: {stored.alarm.kind}"


def _body(stored: StoredAlarm) -> str:
    a = stored.alarm
    who = f" for patient {stored.patient_id}" if stored.patient_id else ""
    return (
        f"{stored.detail or a.kind}{who} (agency {stored.agency_id}, {a.source})."
        f" Not acknowledged. Alarm {stored.id}."
    )
