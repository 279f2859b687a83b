"""Telling people what the dispatcher decided: offer records for the gateway, and frames to
caregivers, families and dispatchers through their outboxes.

Nothing here decides anything; :class:`streams.dispatcher.Dispatcher` calls it after the
stores have committed a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel

from adapters.storage.connection import RedisConnection
from adapters.storage.handovers import Handover
from adapters.storage.incidents import IncidentRow, SentOffer
from adapters.storage.offer_records import OfferRecord
from adapters.storage.postgres import Database
from kernel import recipients
from kernel.contracts import (
    IncidentFrame,
    IncidentSummary,
    OfferFrame,
    OfferOutcome,
    OfferResultFrame,
)
from kernel.settings import Settings

Frames = list[tuple[str, BaseModel]]


class Notices:
    def __init__(
        self, settings: Settings, db: Database, redis: RedisConnection, clock: Callable[[], float]
    ) -> None:
        self._s = settings
        self._db = db
        self._outbox = redis.outbox(settings)
        self._records = redis.offer_records(settings.keys)
        self._clock = clock
        self._names: dict[str, str] = {}

    async def offers(self, incident: IncidentRow, sent: list[SentOffer], now: float) -> None:
        """The offer records the gateway checks answers against, then the frames."""
        records = [
            OfferRecord(
                s.offer_id, s.caregiver_id, s.incident_id, incident.agency_id, s.planned.expires_at
            )
            for s in sent
        ]
        await self._records.write(records, now)
        frames: Frames = [
            (recipients.caregiver(s.caregiver_id), _offer_frame(incident, s)) for s in sent
        ]
        state = "escalated" if incident.state == "escalated" else "offered"
        await self._outbox.send([*frames, *self.incident_frames(incident, state)])

    async def unrecorded(self, offer_ids: list[str]) -> set[str]:
        """Those of ``offer_ids`` with no offer record: never delivered."""
        return await self._records.unrecorded(offer_ids)

    async def results(self, results: Iterable[tuple[str, str, OfferOutcome]]) -> None:
        """``offer_result`` frames: (caregiver, offer, outcome)."""
        await self._outbox.send(
            [
                (recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome=outcome))
                for cg, oid, outcome in results
            ]
        )

    async def escalated(self, incident: IncidentRow) -> None:
        await self._outbox.send(self.incident_frames(incident, "escalated"))

    async def assigned(
        self,
        incident: IncidentRow,
        caregiver_id: str,
        offer_id: str,
        eta_s: float,
        taken: list[tuple[str, str]],
    ) -> None:
        """She won: her result, the others' offers taken, everyone told who comes."""
        name = await self._name(caregiver_id)
        await self._outbox.send(
            [
                (
                    recipients.caregiver(caregiver_id),
                    OfferResultFrame(offer_id=offer_id, outcome="assigned"),
                ),
                *(
                    (recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome="taken"))
                    for oid, cg in taken
                ),
                *self.incident_frames(incident, "assigned", caregiver_id, name, eta_s),
            ]
        )

    async def handed_over(self, incident: IncidentRow, done: Handover) -> None:
        """A dispatcher's assign or resolve: offers closed, the state, her."""
        outcome: OfferOutcome = "taken" if done.outcome == "assigned" else "cancelled"
        frames: Frames = [
            (recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome=outcome))
            for oid, cg in done.offers
        ]
        if done.outcome == "assigned" and done.assignee_id is not None:
            name = await self._name(done.assignee_id)
            states = self.incident_frames(incident, "assigned", done.assignee_id, name)
            frames += [*states, (recipients.caregiver(done.assignee_id), states[0][1])]
        else:
            frames += self.incident_frames(incident, "resolved", done.assignee_id)
        await self._outbox.send(frames)

    def incident_frames(
        self,
        incident: IncidentRow,
        state: str,
        assignee: str | None = None,
        name: str | None = None,
        eta_s: float | None = None,
    ) -> list[tuple[str, IncidentFrame]]:
        """The incident's state, for the patient's family and the agency's dispatchers."""
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
            (recipients.family_of(incident.patient_id), frame),
            (recipients.dispatchers(incident.agency_id), frame),
        ]

    async def _name(self, caregiver_id: str) -> str:
        if caregiver_id not in self._names:
            row = await self._db.caregiver(caregiver_id)
            self._names[caregiver_id] = row.name if row else caregiver_id
        return self._names[caregiver_id]


def _offer_frame(incident: IncidentRow, s: SentOffer) -> OfferFrame:
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


def escalation_payload(incident: IncidentRow, reason: str, now: float) -> dict[str, object]:
    """What the escalation webhook is POSTed."""
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
