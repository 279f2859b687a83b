"""Dispatch orchestration: from a device event to offers, answers, timeouts and escalation.

The decisions are the pure core's (``dispatch.ranking``, ``dispatch.offers``); the atomic
state changes are the stores'; this module wires them, and ``streams.notices`` tells people.
The offer timer (``tick``) and a starting worker (``resume``) also move on whatever a worker
that stopped halfway left behind, so no incident waits unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from itertools import groupby

from adapters.storage.backlog import Backlog
from adapters.storage.connection import RedisConnection
from adapters.storage.handovers import Handover, HandoverStore
from adapters.storage.incidents import WAITING, IncidentRow, IncidentStore, Trigger
from adapters.storage.live import AVAILABLE, BUSY
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.offers import OfferStore
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from adapters.webhook import Webhook
from dispatch.eligibility import NEEDS, ineligibility, needs_of
from dispatch.eta import StraightLineModel, TravelModel
from dispatch.model import Candidate, Ranked
from dispatch.offers import (
    EMERGENCY_KINDS,
    ESCALATE_AFTER_S,
    JOIN_WINDOW_S,
    STALLED_AFTER_S,
    OfferTiming,
    next_step,
    plan_wave,
    severity_of,
)
from dispatch.ranking import SearchStep, rank, search_plan
from kernel.commands import DispatcherCommand
from kernel.contracts import DeviceEvent, OfferAnswer, OfferOutcome
from kernel.settings import Settings
from streams.notices import Notices, escalation_payload

log = logging.getLogger(__name__)

SEARCH_POOL = 10  # candidates looked at per wave, beyond those already asked
SEARCH_CAP = 640  # at most this many, when the roster rules out the nearest ones


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
        webhook: Webhook | None = None,
        mirror: LiveMirror | None = None,
    ) -> None:
        self._s = settings
        self._db = db
        self._incidents = IncidentStore(db)
        self._offers = OfferStore(db)
        self._handovers = HandoverStore(db)
        self._backlog = Backlog(db)
        self._timing = OfferTiming(
            settings.offer_window_by_severity, settings.offer_window_s, settings.max_waves
        )
        self._live = redis.live_index(settings)
        self._mirror = mirror
        self._notices = Notices(settings, db, redis, clock)
        self._model = model or StraightLineModel()
        self._clock = clock
        self._roster = Roster(db)
        self._needs = needs
        self._join_window_s = join_window_s
        url = settings.escalation_webhook_url
        self._webhook = webhook or (Webhook(url) if url else None)

    # ------------------------------------------------------------ inputs

    async def on_device_event(self, ev: DeviceEvent) -> IncidentRow | None:
        """Open an incident for an emergency event and make the first wave of offers."""
        if ev.type not in EMERGENCY_KINDS:
            return None
        device = await self._db.device(ev.device_id)
        if device is None:
            log.warning("event %s from unregistered device %s dropped", ev.event_id, ev.device_id)
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
        opened = await self._incidents.open_or_join(trigger, self._join_window_s)
        if opened is None:
            log.info("event %s already seen", ev.event_id)
            return None
        incident = opened.incident
        if opened.joined:
            log.info("event %s joined incident %s", ev.event_id, incident.id)
            return incident
        await self._advance(incident)
        return incident

    async def on_answer(self, answer: OfferAnswer) -> None:
        now = self._clock()
        if answer.answer == "accept":
            result = await self._offers.accept(answer.offer_id, answer.caregiver_id, now)
        else:
            result = await self._offers.decline(
                answer.offer_id, answer.caregiver_id, answer.reason, now
            )
        if result is None:
            log.warning(
                "answer %s: offer %s is not %s's",
                answer.answer_id,
                answer.offer_id,
                answer.caregiver_id,
            )
            return
        if result.outcome == "assigned":
            await self._assigned(result.incident_id, answer, result.eta_s, result.taken)
        elif result.outcome in ("taken", "offer_expired", "offer_taken", "offer_cancelled"):
            outcome: OfferOutcome = "expired" if result.outcome == "offer_expired" else "taken"
            await self._notices.results([(answer.caregiver_id, answer.offer_id, outcome)])
        if result.wave_closed:
            await self._advance_by_id(result.incident_id)

    async def tick(self, escalate_after_s: float | None = None) -> None:
        """Expire offers whose window has passed and move their incidents on; with
        ``escalate_after_s``, escalate incidents not accepted that long after opening (sooner
        where their severity's waves run out sooner, see ``OfferTiming``); and move on any
        incident left waiting with no offer out, as a worker that stopped halfway leaves it."""
        now = self._clock()
        await self._catch_up(now, escalate_after_s, quiet_since=now - STALLED_AFTER_S)

    async def on_command(self, cmd: DispatcherCommand) -> Handover:
        """A dispatcher's ``assign`` or ``resolve``, audited with her as the actor."""
        now = self._clock()
        if cmd.command == "assign":
            if cmd.caregiver_id is None:
                return Handover("unknown_caregiver")
            done = await self._handovers.assign(
                cmd.incident_id, cmd.caregiver_id, cmd.agency_id, cmd.actor, now
            )
        else:
            done = await self._handovers.resolve(cmd.incident_id, cmd.agency_id, cmd.actor, now)
        if not done.done:
            log.warning(
                "%s %s by %s refused: %s", cmd.command, cmd.incident_id, cmd.actor, done.outcome
            )
            return done
        incident = await self._incidents.get(cmd.incident_id)
        if incident is not None:
            await self._handed_over(incident, done)
        return done

    async def on_manual_assign(self, cmd: DispatcherCommand) -> Handover:
        return await self.on_command(cmd)

    async def resume(self, escalate_after_s: float | None = ESCALATE_AFTER_S) -> None:
        """After a restart, catch up with what fell due while no worker ran: offers past their
        window expire and their incidents move on, overdue incidents escalate, every incident
        left with no offer out gets its next wave (escalated ones too: their waves go on), and
        offers recorded but never delivered are delivered."""
        now = self._clock()
        await self._catch_up(
            now, escalate_after_s, quiet_since=now, escalated_below_wave=self._timing.max_waves
        )
        await self._deliver_lost_offers(now)

    # ------------------------------------------------------------ timers and recovery

    async def _catch_up(
        self,
        now: float,
        escalate_after_s: float | None,
        *,
        quiet_since: float,
        escalated_below_wave: int = 0,
    ) -> None:
        """Expire what is due, escalate what is overdue, move on what stalled."""
        expired, closed = await self._offers.expire_due(now)
        await self._notices.results((e.caregiver_id, e.offer_id, "expired") for e in expired)
        for incident_id in closed:
            await self._advance_by_id(incident_id)
        if escalate_after_s is not None:
            opened_before = self._timing.opened_before(now, escalate_after_s)
            for incident in await self._backlog.overdue(opened_before):
                await self._escalate(incident, "timeout", now)
        stalled = await self._backlog.stalled(
            quiet_since, escalated_below_wave=escalated_below_wave
        )
        for incident_id in stalled:
            await self._advance_by_id(incident_id)

    async def _deliver_lost_offers(self, now: float) -> None:
        """Offers a worker recorded in Postgres but stopped before telling anyone about (no
        offer record in Redis): deliver them, same offer, for the rest of their window."""
        standing = await self._backlog.standing_offers(now - STALLED_AFTER_S, now)
        unrecorded = await self._notices.unrecorded([s.offer_id for s in standing])
        lost = sorted(
            (s for s in standing if s.offer_id in unrecorded), key=lambda s: s.incident_id
        )
        for incident_id, offers in groupby(lost, key=lambda s: s.incident_id):
            incident = await self._incidents.get(incident_id)
            if incident is not None and incident.state in WAITING:
                log.warning("incident %s: delivering offers lost in a restart", incident_id)
                await self._notices.offers(incident, list(offers), now)

    # ------------------------------------------------------------ waves

    async def _advance_by_id(self, incident_id: str) -> None:
        incident = await self._incidents.get(incident_id)
        if incident is not None and incident.state in WAITING:
            await self._advance(incident)

    async def _advance(self, incident: IncidentRow) -> None:
        """Offer the incident to the next wave, or escalate it."""
        now = self._clock()
        asked, fence = await asyncio.gather(
            self._incidents.offered_caregivers(incident.id), self._fence()
        )
        ranked = await self._wave_candidates(incident, asked, now, fence)
        planned = plan_wave(
            ranked,
            already_offered=asked,
            wave=incident.wave + 1,
            wave_size=self._s.offer_wave_size,
            now=now,
            window_s=self._timing.window_s(incident.severity),
        )
        if (
            next_step(wave=incident.wave + 1, max_waves=self._timing.max_waves, planned=planned)
            == "escalate"
        ):
            await self._escalate(incident, "no_candidates" if not planned else "no_acceptance", now)
            return
        sent = await self._incidents.start_wave(incident, planned, now)
        if sent:
            await self._notices.offers(incident, sent, now)

    async def _fence(self) -> int:
        """Where the live index stands now, for a search in the worker's copy of it."""
        return 0 if self._mirror is None else await self._mirror.fence()

    async def _wave_candidates(
        self, incident: IncidentRow, asked: Collection[str], now: float, fence: int
    ) -> list[Ranked]:
        """The nearest qualified candidates, ETA first: enough of them not yet asked for a
        wave, unless the index holds no more within reach or ``SEARCH_CAP`` were looked at."""
        plan = list(search_plan(incident.lat, incident.lon, self._s.search_area_rings))
        need = len(asked) + SEARCH_POOL
        while True:
            found = await self._search(incident, plan, need, now, fence)
            ranked = rank(
                found,
                agency_id=incident.agency_id,
                lat=incident.lat,
                lon=incident.lon,
                model=self._model,
                now=now,
                stale_after_s=self._s.position_stale_s,
            )
            ranked = await self._qualified(incident, ranked, now)
            fresh = sum(r.candidate.caregiver_id not in asked for r in ranked)
            if fresh >= self._s.offer_wave_size or len(found) < need or need >= SEARCH_CAP:
                return ranked
            need = min(2 * need, SEARCH_CAP)

    async def _search(
        self, incident: IncidentRow, plan: list[SearchStep], need: int, now: float, fence: int
    ) -> list[Candidate]:
        """The nearest ``need`` fresh, available caregivers: from the worker's copy of the live
        index once it holds change ``fence``, else from Redis."""
        where = (incident.agency_id, plan)
        stale = self._s.position_stale_s
        lat, lon = incident.lat, incident.lon
        if self._mirror is not None:
            found = await self._mirror.search(
                *where, lat=lat, lon=lon, need=need, now=now, stale_after_s=stale, fence=fence
            )
            if found is not None:
                return found
        return await self._live.search(
            *where, lat=lat, lon=lon, need=need, now=now, stale_after_s=stale
        )

    async def _qualified(
        self, incident: IncidentRow, ranked: list[Ranked], now: float
    ) -> list[Ranked]:
        """Those of ``ranked`` the roster allows to take this incident now."""
        if not ranked:
            return ranked
        rules = await self._roster.rules(incident.agency_id)
        profiles = await self._roster.profiles([r.candidate.caregiver_id for r in ranked], now)
        needs = needs_of(incident.kind, self._needs)
        keep = []
        for r in ranked:
            cid = r.candidate.caregiver_id
            why = ineligibility(profiles[cid], needs=needs, rules=rules, now=now)
            if why is None:
                keep.append(r)
            else:
                log.info("incident %s: %s not eligible (%s)", incident.id, cid, why)
        return keep

    async def _escalate(self, incident: IncidentRow, reason: str, now: float) -> None:
        if await self._incidents.escalate(incident, reason, now):
            log.warning("incident %s escalated: %s", incident.id, reason)
            await self._notices.escalated(incident)
            if self._webhook is not None:
                self._webhook.notify(escalation_payload(incident, reason, now))

    async def _handed_over(self, incident: IncidentRow, done: Handover) -> None:
        if done.outcome == "assigned" and done.assignee_id is not None:
            await self._live.set_status(done.assignee_id, BUSY)
        elif done.assignee_id is not None:
            await self._live.set_status(done.assignee_id, AVAILABLE)
        await self._notices.handed_over(incident, done)

    async def _assigned(
        self, incident_id: str, answer: OfferAnswer, eta_s: float, taken: list[tuple[str, str]]
    ) -> None:
        await self._live.set_status(answer.caregiver_id, BUSY)
        incident = await self._incidents.get(incident_id)
        if incident is not None:
            await self._notices.assigned(
                incident, answer.caregiver_id, answer.offer_id, eta_s, taken
            )
