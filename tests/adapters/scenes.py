"""A small world per test on the real Postgres and Redis, and scenes of it: one agency with a
patient, her device and caregivers standing north of her (:func:`seed`), the caregivers' fixes,
an incident opened straight in the store, and a dispatcher with a clock of the test's own
(:class:`Scene`; the scene maker is the ``make_scene`` fixture of conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from adapters.storage import outbox
from adapters.storage.incidents import IncidentRow, IncidentStore
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from kernel import recipients
from kernel.contracts import DeviceEvent, DeviceEventType, FixEvent, OfferAnswer
from streams.dispatcher import Dispatcher

LEEDS = (53.7997, -1.5492)
M_PER_DEG_LAT = 111_195.0

Frame = dict[str, Any]


@dataclass
class World:
    """One agency with a patient, her device and caregivers ``north_m`` metres north of her."""

    agency: str
    patient: PatientRow
    device: DeviceRow
    caregivers: list[str] = field(default_factory=list)

    def cg(self, i: int) -> str:
        return self.caregivers[i]


def north(metres: float) -> tuple[float, float]:
    return LEEDS[0] + metres / M_PER_DEG_LAT, LEEDS[1]


async def seed(db: Database, caregivers: int = 0, agency: str | None = None) -> World:
    tag = uuid.uuid4().hex[:8]
    agency = agency or f"ag-{tag}"
    await db.upsert_agency(agency, f"Agency {tag}")
    patient = PatientRow(f"p-{tag}", agency, "Edith", *LEEDS)
    device = DeviceRow(f"d-{tag}", agency, patient.id, "pendant")
    cgs = [CaregiverRow(f"cg{i}-{tag}", agency, f"Carer {i} {tag}") for i in range(caregivers)]
    await db.upsert_patients([patient])
    await db.upsert_devices([device])
    await db.upsert_caregivers(cgs)
    return World(agency, patient, device, [c.id for c in cgs])


def fix(cid: str, agency: str, where: tuple[float, float], at: float) -> FixEvent:
    return FixEvent(
        event_id=f"{cid}:{at}",
        agency_id=agency,
        caregiver_id=cid,
        lat=where[0],
        lon=where[1],
        ts=at,
        received_at=at,
    )


async def open_incident(
    db: Database, w: World, now: float, kind: str = "fall", severity: int = 1
) -> IncidentRow:
    """An incident at the world's home, opened straight in the store (no offer made)."""
    row = await IncidentStore(db).open(
        event_id=f"{w.device.id}:{kind}:{now}",
        agency_id=w.agency,
        patient_id=w.patient.id,
        device_id=w.device.id,
        kind=kind,
        severity=severity,
        at=now,
    )
    assert row is not None
    return row


async def offer_states(db: Database, incident_id: str) -> dict[str, str]:
    rows = await db.pool.fetch(
        "SELECT caregiver_id, state FROM offers WHERE incident_id = $1", uuid.UUID(incident_id)
    )
    return {r["caregiver_id"]: r["state"] for r in rows}


async def event_kinds(db: Database, incident_id: str) -> list[str]:
    return [e.kind for e in await db.incident_events(incident_id)]


async def all_done(*aws: Any) -> list[Any]:
    """Run concurrently, wait for every one, then raise the first error if any."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


# ---------------------------------------------------------------- scenes


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Scene:
    """A world whose caregivers stand in the live index, and a dispatcher with a clock."""

    w: World
    clock: Clock
    dispatcher: Dispatcher
    box: outbox.Outbox
    mirror: LiveMirror | None = None  # the dispatcher's copy of the index, if it has one
    answers: int = 0

    async def to(self, recipient: str) -> list[Frame]:
        return [orjson.loads(m) for m in await self.box.since(recipient, 0)]

    async def to_cg(self, i: int, kind: str) -> list[Frame]:
        return [f for f in await self.to(recipients.caregiver(self.w.cg(i))) if f["type"] == kind]

    async def incident_frames(self, recipient: str) -> list[Frame]:
        return [f for f in await self.to(recipient) if f["type"] == "incident"]

    def event(self, seq: int = 1, kind: DeviceEventType = "fall") -> DeviceEvent:
        return DeviceEvent(
            event_id=f"{self.w.device.id}:{seq}",
            agency_id=self.w.agency,
            device_id=self.w.device.id,
            type=kind,
            ts=self.clock.now,
            seq=seq,
            received_at=self.clock.now,
        )

    async def answer(self, i: int, answer: Literal["accept", "decline"]) -> None:
        offer = (await self.to_cg(i, "offer"))[-1]
        self.answers += 1
        await self.dispatcher.on_answer(
            OfferAnswer(
                answer_id=f"ans-{self.answers}",
                offer_id=offer["offer_id"],
                incident_id=offer["incident"]["incident_id"],
                caregiver_id=self.w.cg(i),
                agency_id=self.w.agency,
                answer=answer,
                at=self.clock.now,
            )
        )

    async def offered(self) -> list[int]:
        """How many offers each caregiver has had."""
        return [len(await self.to_cg(i, "offer")) for i in range(len(self.w.caregivers))]


SceneMaker = Callable[..., Awaitable[Scene]]


async def alarms_told(s: Scene) -> list[dict[str, Any]]:
    return [f for f in await s.to(recipients.dispatchers(s.w.agency)) if f["type"] == "alarm"]
