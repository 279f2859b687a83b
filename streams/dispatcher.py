"""Dispatch orchestration: from a device event to offers, answers, timeouts and escalation.

The decisions are the pure core's (whom a wave asks, or that an incident escalates:
``dispatch.planning``); ``streams.candidate_search`` reads the candidates, the atomic state
changes are the stores', this module wires them, and ``streams.notices`` tells people.
The offer timer (``tick``) and a starting worker (``resume``) also move on whatever a worker
that stopped halfway left behind, so no incident waits unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from itertools import groupby

from adapters.storage.announcements import Announcement
from adapters.storage.backlog import Backlog
from adapters.storage.commands import CommandLog
from adapters.storage.connection import RedisConnection
from adapters.storage.handovers import Handover, HandoverStore
from adapters.storage.incidents import WAITING, IncidentRow, IncidentStore, Trigger
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.offers import Answered, OfferStore
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from alarms.rules import rules_for
from dispatch.eligibility import NEEDS
from dispatch.eta import StraightLineModel, TravelModel
from dispatch.offers import (
    EMERGENCY_KINDS,
    ESCALATE_AFTER_S,
    JOIN_WINDOW_S,
    STALLED_AFTER_S,
    OfferTiming,
    severity_of,
)
from dispatch.planning import plan_offers
from kernel import keys
from kernel.contracts import (
    ROUTINE_MONITOR,
    AlarmCommand,
    DeviceEvent,
    DispatcherCommand,
    OfferAnswer,
    OfferOutcome,
)
from kernel.errors import StorageError
from kernel.settings import Settings
from streams.alarm_keeper import AlarmKeeper
from streams.candidate_search import CandidateSearch
from streams.decoding import Refused
from streams.handling import guarded
from streams.medication_keeper import DISPENSER_EVENTS, MedicationKeeper
from streams.medication_log import MedicationLog
from streams.notices import Notices

log = logging.getLogger(__name__)

ANSWER_RESULTS: dict[str, OfferOutcome] = {
    "taken": "taken",
    "offer_taken": "taken",
    "offer_expired": "expired",
    "offer_cancelled": "cancelled",
}
"""What a caregiver is told of an acceptance that did not win, by why."""


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: RedisConnection,
        *,
        model: TravelModel | None = None,
        clock: Callable[[], float] = time.time,
        needs: Mapping[str, frozenset[str]] = NEEDS,
        join_window_s: float = JOIN_WINDOW_S,
        mirror: LiveMirror | None = None,
        park: Callable[[str, list[Refused]], Awaitable[None]] | None = None,
    ) -> None:
        self._s = settings
        self._park = park
        """Parks values refused on a logical Kafka topic (the worker's dead letters)."""
        self._db = db
        self._incidents = IncidentStore(db)
        self._offers = OfferStore(db)
        self._handovers = HandoverStore(db)
        self._commands = CommandLog(db)
        self._backlog = Backlog(db)
        self._timing = OfferTiming(
            settings.offer_window_by_severity, settings.offer_window_s, settings.max_waves
        )
        self._live = redis.live_index(settings)
        self._candidates = CandidateSearch(
            settings, self._live, mirror, Roster(db), model or StraightLineModel(), needs
        )
        self._notices = Notices(settings, db, redis, clock)
        self._clock = clock
        self._join_window_s = join_window_s
        self.refused: Counter[str] = Counter()
        """Dispatchers' commands refused, by reason."""
        self.alarms = AlarmKeeper(settings, db, redis, clock)
        self.medication = MedicationKeeper(settings, db, redis, self.alarms, clock)
        self.medication_log = MedicationLog(settings, db, redis, self.medication, clock)

    # ------------------------------------------------------------ inputs

    async def on_device_event(self, ev: DeviceEvent) -> IncidentRow | None:
        """Open an incident for an emergency event and make the first wave of offers; a new
        trigger from a home whose incident still waits is announced and restarts its offers.
        Other events raise or clear the alarms their kind calls for (``alarms.rules``)."""
        if ev.type not in EMERGENCY_KINDS | DISPENSER_EVENTS and not rules_for(ev.type):
            return None
        device = await self._db.device(ev.device_id)
        if device is None:
            log.warning("event %s from unregistered device %s dropped", ev.event_id, ev.device_id)
            return None
        if ev.type in DISPENSER_EVENTS:
            await self._dispensed(ev, device.agency_id, device.patient_id)
        elif ev.type not in EMERGENCY_KINDS:
            await self.alarms.device_event(device.agency_id, device.patient_id, device.id, ev.type)
        if ev.type not in EMERGENCY_KINDS:
            return None
        trigger = Trigger(
            ev.event_id,
            device.agency_id,
            device.patient_id,
            device.id,
            ev.type,
            severity_of(ev.type),
            self._clock(),
        )
        opened = await self._incidents.open_or_join(
            trigger, self._join_window_s, lambda joined: self._notices.joined(joined, ev.type)
        )
        if opened is None:
            log.info("event %s already seen", ev.event_id)
            return None
        incident = opened.incident
        if opened.joined:
            log.info("event %s joined incident %s", ev.event_id, incident.id)
            await self._notices.tell([incident.id])
            await self._go_on(incident)
            return incident
        await self._advance(incident)
        return incident

    async def on_alarm_command(self, cmd: AlarmCommand) -> str:
        """A hand on an alarm: ``open_incident`` here, the others the alarm keeper's."""
        if cmd.command != "open_incident":
            return await self.alarms.on_command(cmd)
        outcome = await self._incident_of_alarm(cmd)
        await self.alarms.told(cmd, outcome)
        return outcome

    async def _incident_of_alarm(self, cmd: AlarmCommand) -> str:
        """Open an incident for the alarm's patient and make its first wave of offers (or join
        her waiting one); the same alarm episode opens one, however often it is asked. A
        dispatcher's hand also acknowledges the alarm: the incident escalates from now on."""
        stored = await self.alarms.get(cmd.alarm_id)
        if stored is None:
            return "unknown_alarm"
        if stored.agency_id != cmd.agency_id:
            return "other_agency"
        if stored.patient_id is None:
            return "no_patient"
        event_id = f"alarm:{stored.id}:{stored.alarm.count}"
        if await self._incidents.opened_by(event_id) is None and not stored.alarm.active:
            return "alarm_cleared"
        now = self._clock()
        kind = stored.alarm.kind
        trigger = Trigger(
            event_id, stored.agency_id, stored.patient_id, None, kind, severity_of(kind), now
        )
        opened = await self._incidents.open_or_join(
            trigger, self._join_window_s, lambda joined: self._notices.joined(joined, kind)
        )
        if opened is not None and opened.joined:
            await self._notices.tell([opened.incident.id])
            await self._go_on(opened.incident)
        elif opened is not None:
            await self._advance(opened.incident)
        if cmd.dispatcher_id != ROUTINE_MONITOR:
            await self.alarms.on_command(cmd.model_copy(update={"command": "acknowledge"}))
        return "done"

    async def _dispensed(self, ev: DeviceEvent, agency_id: str, patient_id: str) -> None:
        """A dispenser's event, to the medication keeper; one about a dose never scheduled is
        parked on the dead-letter topic with its reason, the rest of the stream going on."""
        refused = await self.medication.device_event(
            agency_id, patient_id, ev.device_id, ev.type, ev.ts, ev.data
        )
        if refused is None:
            return
        log.warning("event %s from %s refused: %s", ev.event_id, ev.device_id, refused)
        if self._park is not None:
            detail = f"{ev.type} at {ev.ts:.0f}: no dose of {patient_id}'s schedule is about it"
            value = ev.model_dump_json().encode()
            await self._park(keys.DEVICE_EVENTS, [Refused(value, refused, detail)])

    async def on_answer(self, answer: OfferAnswer) -> None:
        now = self._clock()
        incident = None
        if answer.answer == "accept":  # what she wins is told with the incident's details
            incident = await self._incidents.get(answer.incident_id)
            name = await self._notices.name(answer.caregiver_id)
            result = await self._offers.accept(
                answer.offer_id,
                answer.caregiver_id,
                now,
                lambda r: self._accepted(incident, answer, name, r),
            )
        else:
            result = await self._offers.decline(
                answer.offer_id,
                answer.caregiver_id,
                answer.reason,
                now,
                lambda agency, iid: self._notices.declined(
                    agency, iid, answer.offer_id, answer.caregiver_id
                ),
            )
        if result is None:
            log.warning(
                "answer %s: offer %s is not %s's",
                answer.answer_id,
                answer.offer_id,
                answer.caregiver_id,
            )
            return
        if result.outcome.startswith("offer_"):  # nothing changed: told at once
            await self._notices.send(self._accepted(incident, answer, "", result))
        await self._notices.tell([result.incident_id])
        if result.outcome == "assigned" and incident is not None:
            await self.alarms.incident_settled(incident)
        if result.wave_closed:
            await self._advance_by_id(result.incident_id)

    def _accepted(
        self, incident: IncidentRow | None, answer: OfferAnswer, name: str, result: Answered
    ) -> Announcement:
        """What an acceptance announces: she won, or her result (taken, expired...)."""
        if result.outcome == "assigned" and incident is not None:
            return self._notices.assigned(
                incident, answer.caregiver_id, name, answer.offer_id, result.eta_s, result.taken
            )
        if result.outcome == "taken":  # her offer changed: the dispatchers see it too
            return self._notices.lost(
                result.agency_id, result.incident_id, answer.offer_id, answer.caregiver_id
            )
        outcome = ANSWER_RESULTS.get(result.outcome)
        if outcome is None:
            return Announcement()
        return self._notices.results([(answer.caregiver_id, answer.offer_id, outcome)])

    async def tick(self, escalate_after_s: float | None = None) -> bool:
        """Expire offers whose window has passed and move their incidents on; with
        ``escalate_after_s``, escalate incidents not accepted that long after opening (sooner
        where their severity's waves run out sooner, see ``OfferTiming``); move on any
        incident left waiting with no offer out, as a worker that stopped halfway leaves it;
        tell what a worker that stopped committed and never told; and climb the alarms'
        ladders (raising the alarm of an escalated incident that has none). The medication
        watch has a timer of its own (``medication.tick``).

        Never raises: each part, and each incident in it, goes on when another fails (logged);
        whether every one went through."""
        now = self._clock()
        ok = await self._catch_up(now, escalate_after_s, quiet_since=now - STALLED_AFTER_S)
        ok &= await guarded("telling what was kept", self._notices.tell_due)
        ok &= await guarded("alarms of escalated incidents", self._alarm_escalated)
        return ok & await guarded("alarm ladders", self.alarms.tick)

    async def _alarm_escalated(self) -> None:
        for incident in await self._backlog.escalated_unalarmed():
            await self.alarms.incident_escalated(incident, "escalated")

    async def on_command(self, cmd: DispatcherCommand) -> Handover:
        """A dispatcher's ``assign`` or ``resolve``, audited with her as the actor; its outcome
        (done, or refused with the reason) goes to her agency's dispatchers and is kept in the
        command log (what the HTTP API reads back). The same command handled again (Kafka's
        replay, a retry after a failed telling) is told as done."""
        done = await self._on_command(cmd)
        await self._commands.decided(
            cmd.agency_id,
            cmd.command_id,
            cmd.actor,
            {"command": cmd.command, "incident_id": cmd.incident_id},
            "done" if done.done else done.outcome,
            self._clock(),
        )
        return done

    async def _on_command(self, cmd: DispatcherCommand) -> Handover:
        now = self._clock()
        incident = await self._incidents.get(cmd.incident_id)
        done = await self._hand_over(cmd, incident, now)
        if not done.done and incident is not None:
            before = await self._handovers.done_by(incident.id, cmd.command_id)
            if before is not None:
                await self._notices.tell([incident.id])  # what it announced, if still kept
                return Handover(before)
        if not done.done or incident is None:
            self.refused[done.outcome] += 1
            log.debug("%s %s by %s refused: %s", cmd.command, cmd.incident_id, cmd.actor, done)
            await self._notices.send(
                Announcement([self._notices.command_result(cmd, done.outcome)])
            )
            return done
        await self._notices.tell([incident.id])
        await self.alarms.incident_settled(incident)
        return done

    async def _hand_over(
        self, cmd: DispatcherCommand, incident: IncidentRow | None, now: float
    ) -> Handover:
        if incident is None:
            return Handover("unknown_incident")
        if cmd.command == "resolve":
            return await self._handovers.resolve(
                cmd.incident_id,
                cmd.agency_id,
                cmd.actor,
                now,
                lambda done: self._notices.handed_over(incident, cmd, done, None),
                command_id=cmd.command_id,
            )
        if cmd.caregiver_id is None:
            return Handover("unknown_caregiver")
        name = await self._notices.name(cmd.caregiver_id)
        return await self._handovers.assign(
            cmd.incident_id,
            cmd.caregiver_id,
            cmd.agency_id,
            cmd.actor,
            now,
            lambda done: self._notices.handed_over(incident, cmd, done, name),
            command_id=cmd.command_id,
        )

    async def on_manual_assign(self, cmd: DispatcherCommand) -> Handover:
        return await self.on_command(cmd)

    async def resume(self, escalate_after_s: float | None = ESCALATE_AFTER_S) -> None:
        """After a restart, catch up with what fell due while no worker ran: offers past their
        window expire and their incidents move on, overdue incidents escalate, every incident
        left with no offer out gets its next wave (escalated ones too: their waves go on), and
        what a worker committed and never told is told, and offers recorded but never
        delivered are delivered."""
        now = self._clock()
        await self._notices.tell_due()
        await self._catch_up(now, escalate_after_s, quiet_since=now)
        await self._deliver_lost_offers(now)

    async def resync(self) -> None:
        """After Redis lost its data (the outboxes and offer records with the rest): every
        offer still standing is delivered again, same offer, and every unresolved incident's
        state is told again to its family and its agency's dispatchers, whose clients were told
        to resync."""
        now = self._clock()
        await self._notices.tell_due(all_kept=True)  # records written: not sent twice below
        told = await self._deliver_lost_offers(now, offered_before=now)
        for incident in await self._backlog.unresolved():
            if incident.id in told:
                continue  # told with its offers
            assignee = incident.assignee_id
            name = None if assignee is None else await self._notices.name(assignee)
            frames = self._notices.incident_frames(incident, incident.state, assignee, name)
            await self._notices.send(Announcement(frames))

    # ------------------------------------------------------------ timers and recovery

    async def _catch_up(
        self,
        now: float,
        escalate_after_s: float | None,
        *,
        quiet_since: float,
    ) -> bool:
        """Expire what is due, escalate what is overdue, move on what stalled; each incident
        on its own (one that fails is logged and the others go on). Whether all went through."""
        ok = await guarded("expiring offers", partial(self._expire, now))
        if escalate_after_s is not None:
            opened_before = self._timing.opened_before(now, escalate_after_s)
            overdue = partial(self._escalate_overdue, opened_before, now)
            ok &= await guarded("escalating overdue incidents", overdue)
        stalled = partial(self._move_on_stalled, quiet_since)
        return ok & await guarded("moving on stalled incidents", stalled)

    async def _expire(self, now: float) -> bool:
        expired, closed = await self._offers.expire_due(
            now,
            self._notices.expired,
        )
        await self._notices.tell(sorted({e.incident_id for e in expired}))
        return await self._each(closed, self._advance_by_id)

    async def _escalate_overdue(self, opened_before: dict[int, float], now: float) -> bool:
        overdue = {i.id: i for i in await self._backlog.overdue(opened_before)}
        return await self._each(overdue, lambda iid: self._escalate(overdue[iid], "timeout", now))

    async def _move_on_stalled(self, quiet_since: float) -> bool:
        return await self._each(await self._backlog.stalled(quiet_since), self._advance_by_id)

    async def _each(
        self, incident_ids: Iterable[str], step: Callable[[str], Awaitable[None]]
    ) -> bool:
        """``step`` for each incident, whatever the others do; whether all went through."""
        ok = True
        for incident_id in incident_ids:
            ok &= await guarded(f"incident {incident_id}", partial(step, incident_id))
        if not ok:
            raise StorageError("some incidents could not be moved on (logged); the next tick tries")
        return ok

    async def _deliver_lost_offers(
        self, now: float, offered_before: float | None = None
    ) -> set[str]:
        """Offers a worker recorded in Postgres but stopped before telling anyone about, or
        whose telling Redis lost (no offer record in Redis): deliver them, same offer, for the
        rest of their window. The incidents told so."""
        before = now - STALLED_AFTER_S if offered_before is None else offered_before
        standing = await self._backlog.standing_offers(before, now)
        unrecorded = await self._notices.unrecorded([s.offer_id for s in standing])
        lost = sorted(
            (s for s in standing if s.offer_id in unrecorded), key=lambda s: s.incident_id
        )
        told = set()
        for incident_id, offers in groupby(lost, key=lambda s: s.incident_id):
            incident = await self._incidents.get(incident_id)
            if incident is not None and incident.state in WAITING:
                log.warning("incident %s: delivering offers lost in a restart", incident_id)
                await self._notices.send(self._notices.offers(incident, list(offers), now))
                told.add(incident_id)
        return told

    # ------------------------------------------------------------ waves

    async def _advance_by_id(self, incident_id: str) -> None:
        incident = await self._incidents.get(incident_id)
        if incident is not None and incident.state in WAITING:
            await self._advance(incident)

    async def _advance(self, incident: IncidentRow) -> None:
        """Offer the incident to the next wave, or escalate it."""
        now = self._clock()
        asked, change = await asyncio.gather(
            self._incidents.offered_caregivers(incident.id), self._candidates.change_number()
        )
        shortlist = await self._candidates.shortlist(incident, asked, now, change)
        plan = plan_offers(
            incident,
            shortlist.ranked,
            offered=asked,
            ineligible=shortlist.ineligible,
            timing=self._timing,
            wave_size=self._s.offer_wave_size,
            now=now,
        )
        if plan.escalation is not None:
            await self._escalate(incident, plan.escalation, now)
            return
        if not plan.offers:  # escalated, no one left to ask now: the timer looks again later
            await self._incidents.looked_at(incident, now)
            return
        sent = await self._incidents.start_wave(
            incident, plan.offers, now, lambda now_is, sent: self._notices.offers(now_is, sent, now)
        )
        if sent:
            await self._notices.tell([incident.id])

    async def _escalate(self, incident: IncidentRow, reason: str, now: float) -> None:
        told = self._notices.escalated(incident)
        if await self._incidents.escalate(incident, reason, now, told):
            log.warning("incident %s escalated: %s", incident.id, reason)
            await self._notices.tell([incident.id])
            await self.alarms.incident_escalated(incident, reason)
            await self._go_on(incident)

    async def _go_on(self, incident: IncidentRow) -> None:
        """Its next wave now, unless one is out (its window closing moves it on)."""
        if not await self._incidents.offers_out(incident.id):
            await self._advance_by_id(incident.id)
