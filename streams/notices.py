"""Telling people what the dispatcher decided: offer records for the gateway, caregivers'
statuses, and frames to caregivers, families and dispatchers through their outboxes.

Nothing here decides anything. For each step :class:`streams.dispatcher.Dispatcher` takes, a
method here composes its :class:`~adapters.storage.announcements.Announcement` (no I/O), which
the store keeps in the step's own transaction; :meth:`Notices.tell` then delivers what the
incidents' committed steps announced, and :meth:`Notices.tell_due` what a worker that died
never told. What changes no record (a refused command, a late answer's result) is sent at
once (:meth:`Notices.send`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import orjson
from pydantic import BaseModel

from adapters.storage.announcements import Announcement
from adapters.storage.connection import RedisConnection
from adapters.storage.handovers import Handover
from adapters.storage.incidents import IncidentRow, SentOffer
from adapters.storage.live import AVAILABLE, BUSY
from adapters.storage.offer_records import OfferRecord
from adapters.storage.offers import Expired
from adapters.storage.postgres import Database
from kernel import recipients
from kernel.contracts import (
    CommandResultFrame,
    DispatcherCommand,
    IncidentFrame,
    IncidentSummary,
    OfferFrame,
    OfferOutcome,
    OfferResultFrame,
    OfferState,
    OfferStatusFrame,
)
from kernel.settings import Settings

Frames = list[tuple[str, bytes]]
OfferChange = tuple[str, str, OfferState]
"""(offer, caregiver, its new state), as the dispatchers are told it."""
TOLD_LATE_AFTER_S = 2.0
"""An announcement kept this long and not told was left by a worker that stopped."""


def _frame(recipient: str, frame: BaseModel) -> tuple[str, bytes]:
    return recipient, orjson.dumps(frame.model_dump(mode="json"))


class Notices:
    def __init__(
        self, settings: Settings, db: Database, redis: RedisConnection, clock: Callable[[], float]
    ) -> None:
        self._s = settings
        self._db = db
        self._records = redis.offer_records(settings.keys)
        self._announcements = redis.announcements(db, settings)
        self._clock = clock
        self._names: dict[str, str] = {}

    # ------------------------------------------------------------ telling

    async def tell(self, incident_ids: Sequence[str]) -> int:
        """Deliver what the incidents' committed steps announced; the frames sent."""
        return (await self._announcements.deliver(incident_ids, self._clock())).frames

    async def tell_due(self, *, all_kept: bool = False) -> int:
        """Deliver what a worker committed and never told (``all_kept``: every announcement
        kept, however new); the frames sent."""
        now = self._clock()
        before = now if all_kept else now - TOLD_LATE_AFTER_S
        done = await self._announcements.deliver_due(before, now)
        return done.frames

    async def send(self, announcement: Announcement) -> None:
        """Tell what goes with no committed step, at once."""
        await self._announcements.tell_now(announcement, self._clock())

    async def unrecorded(self, offer_ids: list[str]) -> set[str]:
        """Those of ``offer_ids`` with no offer record: never delivered."""
        return await self._records.unrecorded(offer_ids)

    async def name(self, caregiver_id: str) -> str:
        """Her name, as families and dispatchers are told it."""
        if caregiver_id not in self._names:
            row = await self._db.caregiver(caregiver_id)
            self._names[caregiver_id] = row.name if row else caregiver_id
        return self._names[caregiver_id]

    # ------------------------------------------------------------ what each step announces

    def offers(self, incident: IncidentRow, sent: list[SentOffer], now: float) -> Announcement:
        """The offer records the gateway checks answers against, then the frames."""
        records = [
            OfferRecord(
                s.offer_id, s.caregiver_id, s.incident_id, incident.agency_id, s.planned.expires_at
            )
            for s in sent
        ]
        frames = [
            _frame(recipients.caregiver(s.caregiver_id), _offer_frame(incident, s)) for s in sent
        ]
        state = "escalated" if incident.state == "escalated" else "offered"
        made = [self._offer_made(incident.agency_id, s) for s in sent]
        return Announcement([*frames, *made, *self.incident_frames(incident, state)], records)

    def results(self, results: Iterable[tuple[str, str, OfferOutcome]]) -> Announcement:
        """``offer_result`` frames: (caregiver, offer, outcome)."""
        return Announcement(
            [
                _frame(recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome=outcome))
                for cg, oid, outcome in results
            ]
        )

    def expired(self, due: list[Expired]) -> Announcement:
        """Offers whose window closed unanswered: each caregiver's result, and the state of
        each offer to its agency's dispatchers."""
        told = self.results((e.caregiver_id, e.offer_id, "expired") for e in due)
        states = [
            self.offer_states(e.agency_id, e.incident_id, [(e.offer_id, e.caregiver_id, "expired")])
            for e in due
        ]
        return Announcement([*told.frames, *(f for frames in states for f in frames)])

    def lost(
        self, agency_id: str, incident_id: str, offer_id: str, caregiver_id: str
    ) -> Announcement:
        """Her acceptance came after someone else's: her result, and her offer's state."""
        told = self.results([(caregiver_id, offer_id, "taken")])
        changes: list[OfferChange] = [(offer_id, caregiver_id, "taken")]
        return Announcement([*told.frames, *self.offer_states(agency_id, incident_id, changes)])

    def declined(
        self, agency_id: str, incident_id: str, offer_id: str, caregiver_id: str
    ) -> Announcement:
        """She said no: her offer's state, to the dispatchers (she knows what she said)."""
        changes: list[OfferChange] = [(offer_id, caregiver_id, "declined")]
        return Announcement(self.offer_states(agency_id, incident_id, changes))

    def offer_states(
        self, agency_id: str, incident_id: str, changes: Iterable[OfferChange]
    ) -> Frames:
        """``offer_status`` frames of one incident's offers, to its agency's dispatchers: what
        each caregiver asked answered, or what became of her offer."""
        return [
            _frame(
                recipients.dispatchers(agency_id),
                OfferStatusFrame(
                    offer_id=offer_id,
                    incident_id=incident_id,
                    caregiver_id=caregiver_id,
                    state=state,
                    at=self._clock(),
                ),
            )
            for offer_id, caregiver_id, state in changes
        ]

    def _offer_made(self, agency_id: str, s: SentOffer) -> tuple[str, bytes]:
        frame = OfferStatusFrame(
            offer_id=s.offer_id,
            incident_id=s.incident_id,
            caregiver_id=s.caregiver_id,
            state="offered",
            expires_at=s.planned.expires_at,
            eta_s=round(s.planned.eta_s, 1),
            at=self._clock(),
        )
        return _frame(recipients.dispatchers(agency_id), frame)

    def escalated(self, incident: IncidentRow) -> Announcement:
        return Announcement(self.incident_frames(incident, "escalated"))

    def joined(self, incident: IncidentRow, trigger_kind: str) -> Announcement:
        """A new trigger from the home joined the incident: its family and dispatchers know."""
        return Announcement(
            self.incident_frames(
                incident, incident.state, incident.assignee_id, trigger=trigger_kind
            )
        )

    def assigned(
        self,
        incident: IncidentRow,
        caregiver_id: str,
        name: str,
        offer_id: str,
        eta_s: float,
        taken: list[tuple[str, str]],
    ) -> Announcement:
        """She won: her result, the others' offers taken, everyone told who comes; she is busy."""
        return Announcement(
            [
                _frame(
                    recipients.caregiver(caregiver_id),
                    OfferResultFrame(offer_id=offer_id, outcome="assigned"),
                ),
                *(
                    _frame(
                        recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome="taken")
                    )
                    for oid, cg in taken
                ),
                *self.offer_states(
                    incident.agency_id,
                    incident.id,
                    [
                        (offer_id, caregiver_id, "accepted"),
                        *((oid, cg, "taken") for oid, cg in taken),
                    ],
                ),
                *self.incident_frames(incident, "assigned", caregiver_id, name, eta_s),
            ],
            statuses=[(caregiver_id, BUSY)],
        )

    def handed_over(
        self, incident: IncidentRow, cmd: DispatcherCommand, done: Handover, name: str | None
    ) -> Announcement:
        """A dispatcher's assign or resolve: offers closed, the state, her, the outcome."""
        outcome: Literal["taken", "cancelled"] = (
            "taken" if done.outcome == "assigned" else "cancelled"
        )
        frames: Frames = [
            _frame(recipients.caregiver(cg), OfferResultFrame(offer_id=oid, outcome=outcome))
            for oid, cg in done.offers
        ]
        frames += self.offer_states(
            incident.agency_id, incident.id, ((oid, cg, outcome) for oid, cg in done.offers)
        )
        statuses: list[tuple[str, str]] = []
        if done.outcome == "assigned" and done.assignee_id is not None:
            states = self.incident_frames(incident, "assigned", done.assignee_id, name)
            frames += [*states, (recipients.caregiver(done.assignee_id), states[0][1])]
            statuses.append((done.assignee_id, BUSY))
        else:
            frames += self.incident_frames(incident, "resolved", done.assignee_id)
            if done.assignee_id is not None:
                statuses.append((done.assignee_id, AVAILABLE))
        frames.append(self.command_result(cmd, done.outcome))
        return Announcement(frames, statuses=statuses)

    def command_result(self, cmd: DispatcherCommand, outcome: str) -> tuple[str, bytes]:
        """The worker's decision on a dispatcher's command, to her agency's dispatchers."""
        done = outcome in ("assigned", "resolved")
        frame = CommandResultFrame(
            command_id=cmd.command_id,
            command=cmd.command,
            incident_id=cmd.incident_id,
            dispatcher_id=cmd.dispatcher_id,
            outcome="done" if done else "refused",
            reason=None if done else outcome,
            at=self._clock(),
        )
        return _frame(recipients.dispatchers(cmd.agency_id), frame)

    def incident_frames(
        self,
        incident: IncidentRow,
        state: str,
        assignee: str | None = None,
        name: str | None = None,
        eta_s: float | None = None,
        trigger: str | None = None,
    ) -> Frames:
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
                "trigger": trigger,
                "at": self._clock(),
            }
        )
        return [
            _frame(recipients.family_of(incident.agency_id, incident.patient_id), frame),
            _frame(recipients.dispatchers(incident.agency_id), frame),
        ]


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
