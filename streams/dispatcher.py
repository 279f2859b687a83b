"""Dispatch orchestration: from a device event to offers, answers, timeouts and escalation.

The decisions are the pure core's (``dispatch.ranking``, ``dispatch.offers``); the atomic
state changes are the stores'; this module wires them and tells people through the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping

import redis.asyncio as aioredis
from pydantic import BaseModel

from careknot.contracts import (
    DeviceEvent,
    IncidentFrame,
    IncidentSummary,
    OfferAnswer,
    OfferFrame,
    OfferOutcome,
    OfferResultFrame,
)
from careknot.escalation import Webhook
from careknot.settings import Settings
from careknot.storage import outbox
from careknot.storage.incidents import Handover, IncidentRow, IncidentStore, SentOffer, Trigger
from careknot.storage.live import AVAILABLE, BUSY, LiveIndex
from careknot.storage.offers import OfferStore
from careknot.storage.postgres import Database
from careknot.storage.roster import Roster
from dispatch.commands import DispatcherCommand
from dispatch.eligibility import NEEDS, ineligibility, needs_of
from dispatch.eta import StraightLineModel, TravelModel
from dispatch.model import Ranked
from dispatch.offers import EMERGENCY_KINDS, JOIN_WINDOW_S, next_step, plan_wave, severity_of
from dispatch.ranking import rank, search_plan

log = logging.getLogger(__name__)

SEARCH_POOL = 10  # candidates looked at per wave, beyond those already asked
SEARCH_CAP = 640  # at most this many, when the roster rules out the nearest ones


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: aioredis.Redis,
        *,
        model: TravelModel | None = None,
        clock: Callable[[], float] = time.time,
        needs: Mapping[str, frozenset[str]] = NEEDS,
        join_window_s: float = JOIN_WINDOW_S,
        webhook: Webhook | None = None,
    ) -> None:
        self._s = settings
        self._db = db
        self._redis = redis
        self._incidents = IncidentStore(db)
        self._offers = OfferStore(db)
        self._live = LiveIndex(redis, settings)
        self._outbox = outbox.Outbox(redis, settings)
        self._model = model or StraightLineModel()
        self._clock = clock
        self._roster = Roster(db)
        self._needs = needs
        self._join_window_s = join_window_s
        url = settings.escalation_webhook_url
        self._webhook = webhook or (Webhook(url) if url else None)
        self._names: dict[str, str] = {}

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
            await self._outbox.send(
                [
                    (
                        outbox.caregiver(answer.caregiver_id),
                        OfferResultFrame(offer_id=answer.offer_id, outcome=outcome),
                    )
                ]
            )
        if result.wave_closed:
            await self._advance_by_id(result.incident_id)

    async def tick(self, escalate_after_s: float | None = None) -> None:
        """Expire offers whose window has passed and move their incidents on; with
        ``escalate_after_s``, escalate incidents opened that long ago and still not accepted."""
        now = self._clock()
        expired, closed = await self._offers.expire_due(now)
        await self._outbox.send(
            [
                (
                    outbox.caregiver(e.caregiver_id),
                    OfferResultFrame(offer_id=e.offer_id, outcome="expired"),
                )
                for e in expired
            ]
        )
        for incident_id in closed:
            await self._advance_by_id(incident_id)
        if escalate_after_s is not None:
            for incident in await self._incidents.overdue(now - escalate_after_s):
                await self._escalate(incident, "timeout", now)

    async def on_command(self, cmd: DispatcherCommand) -> Handover:
        """A dispatcher's ``assign`` or ``resolve``, audited with her as the actor."""
        now = self._clock()
        if cmd.command == "assign":
            if cmd.caregiver_id is None:
                return Handover("unknown_caregiver")
            done = await self._incidents.assign(
                cmd.incident_id, cmd.caregiver_id, cmd.agency_id, cmd.actor, now
            )
        else:
            done = await self._incidents.resolve(cmd.incident_id, cmd.agency_id, cmd.actor, now)
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

    async def resume(self) -> None:
        """After a restart: move on every incident left with no pending offer."""
        for incident_id in await self._offers.waiting_incidents():
            await self._advance_by_id(incident_id)

    # ------------------------------------------------------------ waves

    async def _advance_by_id(self, incident_id: str) -> None:
        incident = await self._incidents.get(incident_id)
        if incident is not None and incident.state in ("open", "offered", "escalated"):
            await self._advance(incident)

    async def _advance(self, incident: IncidentRow) -> None:
        """Offer the incident to the next wave, or escalate it."""
        now = self._clock()
        asked = await self._incidents.offered_caregivers(incident.id)
        ranked = await self._wave_candidates(incident, asked, now)
        planned = plan_wave(
            ranked,
            already_offered=asked,
            wave=incident.wave + 1,
            wave_size=self._s.offer_wave_size,
            now=now,
            window_s=self._s.offer_window_s,
        )
        if (
            next_step(wave=incident.wave + 1, max_waves=self._s.max_waves, planned=planned)
            == "escalate"
        ):
            await self._escalate(incident, "no_candidates" if not planned else "no_acceptance", now)
            return
        sent = await self._incidents.start_wave(incident, planned, now)
        if sent:
            await self._send_offers(incident, sent)

    async def _wave_candidates(
        self, incident: IncidentRow, asked: Collection[str], now: float
    ) -> list[Ranked]:
        """The nearest qualified candidates, ETA first: enough of them not yet asked for a
        wave, unless the index holds no more within reach or ``SEARCH_CAP`` were looked at."""
        plan = list(search_plan(incident.lat, incident.lon, self._s.search_area_rings))
        need = len(asked) + SEARCH_POOL
        while True:
            found = await self._live.search(
                incident.agency_id,
                plan,
                lat=incident.lat,
                lon=incident.lon,
                need=need,
                now=now,
                stale_after_s=self._s.position_stale_s,
            )
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

    async def _send_offers(self, incident: IncidentRow, sent: list[SentOffer]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for s in sent:
                key = self._s.key("offer", s.offer_id)
                pipe.hset(
                    key,
                    mapping={
                        "caregiver_id": s.caregiver_id,
                        "incident_id": s.incident_id,
                        "agency_id": incident.agency_id,
                        "expires_at": s.planned.expires_at,
                    },
                )
                pipe.expire(key, int(self._s.offer_window_s) + 3600)
            await pipe.execute()
        frames = [(outbox.caregiver(s.caregiver_id), self._offer_frame(incident, s)) for s in sent]
        state = "escalated" if incident.state == "escalated" else "offered"
        await self._outbox.send([*frames, *self._incident_frames(incident, state)])

    def _offer_frame(self, incident: IncidentRow, s: SentOffer) -> OfferFrame:
        summary = IncidentSummary(
            incident_id=incident.id,
            kind=incident.kind,
            severity=incident.severity,
            lat=round(incident.lat, 3),
            lon=round(incident.lon, 3),
            distance_m=round(s.planned.distance_m, 1),
            eta_s=round(s.planned.eta_s, 1),
        )
        return OfferFrame(offer_id=s.offer_id, incident=summary, expires_at=s.planned.expires_at)

    async def _escalate(self, incident: IncidentRow, reason: str, now: float) -> None:
        if await self._incidents.escalate(incident, reason, now):
            log.warning("incident %s escalated: %s", incident.id, reason)
            await self._outbox.send(self._incident_frames(incident, "escalated"))
            if self._webhook is not None:
                self._webhook.notify(_escalation_payload(incident, reason, now))

    async def _handed_over(self, incident: IncidentRow, done: Handover) -> None:
        """Tell everyone a dispatcher's assign or resolve: offers closed, the state, her."""
        outcome: OfferOutcome = "taken" if done.outcome == "assigned" else "cancelled"
        frames: list[tuple[str, BaseModel]] = [
            (outbox.caregiver(cg), OfferResultFrame(offer_id=oid, outcome=outcome))
            for oid, cg in done.offers
        ]
        if done.outcome == "assigned" and done.assignee_id is not None:
            await self._live.set_status(done.assignee_id, BUSY)
            name = await self._name(done.assignee_id)
            states = self._incident_frames(incident, "assigned", done.assignee_id, name)
            frames += [*states, (outbox.caregiver(done.assignee_id), states[0][1])]
        else:
            if done.assignee_id is not None:
                await self._live.set_status(done.assignee_id, AVAILABLE)
            frames += self._incident_frames(incident, "resolved", done.assignee_id)
        await self._outbox.send(frames)

    async def _assigned(
        self, incident_id: str, answer: OfferAnswer, eta_s: float, taken: list[tuple[str, str]]
    ) -> None:
        await self._live.set_status(answer.caregiver_id, BUSY)
        incident = await self._incidents.get(incident_id)
        if incident is None:
            return
        name = await self._name(answer.caregiver_id)
        await self._outbox.send(
            [
                (
                    outbox.caregiver(answer.caregiver_id),
                    OfferResultFrame(offer_id=answer.offer_id, outcome="assigned"),
                ),
                *(
                    (outbox.caregiver(cg), OfferResultFrame(offer_id=oid, outcome="taken"))
                    for oid, cg in taken
                ),
                *self._incident_frames(incident, "assigned", answer.caregiver_id, name, eta_s),
            ]
        )

    def _incident_frames(
        self,
        incident: IncidentRow,
        state: str,
        assignee: str | None = None,
        name: str | None = None,
        eta_s: float | None = None,
    ) -> list[tuple[str, IncidentFrame]]:
        frame = IncidentFrame.model_validate(
            {
                "incident_id": incident.id,
                "patient_id": incident.patient_id,
                "kind": incident.kind,
                "state": state,
                "assignee_id": assignee,
                "assignee_name": name,
                "eta_s": None if eta_s is None else round(eta_s, 1),
                "lat": round(incident.lat, 3),
                "lon": round(incident.lon, 3),
                "at": self._clock(),
            }
        )
        return [
            (outbox.family_of(incident.patient_id), frame),
            (outbox.dispatchers(incident.agency_id), frame),
        ]

    async def _name(self, caregiver_id: str) -> str:
        if caregiver_id not in self._names:
            row = await self._db.caregiver(caregiver_id)
            self._names[caregiver_id] = row.name if row else caregiver_id
        return self._names[caregiver_id]


def _escalation_payload(incident: IncidentRow, reason: str, now: float) -> dict[str, object]:
    return {
        "type": "incident_escalated",
        "incident_id": incident.id,
        "agency_id": incident.agency_id,
        "patient_id": incident.patient_id,
        "kind": incident.kind,
        "severity": incident.severity,
        "reason": reason,
        "waves": incident.wave,
        "lat": round(incident.lat, 3),
        "lon": round(incident.lon, 3),
        "at": now,
    }
