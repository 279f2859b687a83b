"""An agency's people as its HTTP API reads and writes them: pages of them in id order, one by
id, and a write that holds only when its precondition does (the version a client last read:
two dispatchers cannot overwrite each other's change), under a row lock, in one transaction.

A row of another agency is neither shown nor written: an id taken by another agency is
``other_agency``, never moved across.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow, known_zone
from devices.kinds import kind_of

Written = Literal[
    "created",
    "replaced",
    "precondition_failed",
    "other_agency",
    "unknown_patient",
    "unknown_device_kind",
    "unknown_zone",
    "forgotten",
    "decommissioned",
]
Precondition = Callable[[CaregiverRow | None], bool]
"""Whether the write may go on, given the row as it stands (None: there is none)."""
DevicePrecondition = Callable[[DeviceRow | None], bool]
PatientPrecondition = Callable[[PatientRow | None], bool]


@dataclass(frozen=True, slots=True)
class AgencyRow:
    id: str
    name: str


AgencyPrecondition = Callable[[AgencyRow | None], bool]


def _device(r: object) -> DeviceRow:
    row = dict(r)  # type: ignore[call-overload]
    return DeviceRow(
        row["id"], row["agency_id"], row["patient_id"], row["kind"], row["decommissioned"]
    )


_DEVICE = (
    "SELECT id, agency_id, patient_id, kind, decommissioned_at IS NOT NULL AS decommissioned"
    " FROM devices"
)


def _caregiver(r: object) -> CaregiverRow:
    row = dict(r)  # type: ignore[call-overload]
    return CaregiverRow(row["id"], row["agency_id"], row["name"], tuple(row["skills"]))


class Directory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def caregivers(self, agency_id: str, limit: int, after: str = "") -> list[CaregiverRow]:
        """A page of the agency's caregivers: ids after ``after``, in id order."""
        rows = await self._db.pool.fetch(
            "SELECT id, agency_id, name, skills FROM caregivers"
            " WHERE agency_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            agency_id,
            after,
            limit,
        )
        return [_caregiver(r) for r in rows]

    async def caregiver(self, agency_id: str, caregiver_id: str) -> CaregiverRow | None:
        row = await self._db.pool.fetchrow(
            "SELECT id, agency_id, name, skills FROM caregivers WHERE id = $1 AND agency_id = $2",
            caregiver_id,
            agency_id,
        )
        return None if row is None else _caregiver(row)

    async def put_caregiver(self, row: CaregiverRow, holds: Precondition) -> Written:
        """Create or replace the caregiver, if ``holds`` for the row as it stands."""
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('caregiver:' || $1))", row.id)
            found = await conn.fetchrow(
                "SELECT id, agency_id, name, skills FROM caregivers WHERE id = $1 FOR UPDATE",
                row.id,
            )
            current = None if found is None else _caregiver(found)
            if current is not None and current.agency_id != row.agency_id:
                return "other_agency"
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                "INSERT INTO caregivers(id, agency_id, name, skills) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, skills = EXCLUDED.skills",
                row.id,
                row.agency_id,
                row.name,
                list(row.skills),
            )
        return "created" if current is None else "replaced"

    async def devices(self, agency_id: str, limit: int, after: str = "") -> list[DeviceRow]:
        """A page of the agency's devices: ids after ``after``, in id order."""
        rows = await self._db.pool.fetch(
            f"{_DEVICE} WHERE agency_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            agency_id,
            after,
            limit,
        )
        return [_device(r) for r in rows]

    async def device(self, agency_id: str, device_id: str) -> DeviceRow | None:
        row = await self._db.pool.fetchrow(
            f"{_DEVICE} WHERE id = $1 AND agency_id = $2", device_id, agency_id
        )
        return None if row is None else _device(row)

    async def put_device(self, row: DeviceRow, holds: DevicePrecondition) -> Written:
        """Register or change a device of a patient of the agency, if ``holds`` for the row as
        it stands; a kind the system does not know, or a patient not the agency's, is refused."""
        if kind_of(row.kind) is None:
            return "unknown_device_kind"
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('device:' || $1))", row.id)
            found = await conn.fetchrow(f"{_DEVICE} WHERE id = $1 FOR UPDATE", row.id)
            current = None if found is None else _device(found)
            if current is not None and current.agency_id != row.agency_id:
                return "other_agency"
            if current is not None and current.decommissioned:
                return "decommissioned"
            whose = await conn.fetchval(
                "SELECT agency_id FROM patients WHERE id = $1", row.patient_id
            )
            if whose != row.agency_id:
                return "unknown_patient"
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                "INSERT INTO devices(id, agency_id, patient_id, kind) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
                " kind = EXCLUDED.kind",
                row.id,
                row.agency_id,
                row.patient_id,
                row.kind,
            )
        return "created" if current is None else "replaced"

    async def decommission_device(
        self, agency_id: str, device_id: str, holds: DevicePrecondition
    ) -> Literal["decommissioned", "unknown_device", "precondition_failed"]:
        """Take the agency's device out of service, if ``holds`` for it as it stands (one
        already out of service stays so)."""
        async with self._db.transaction() as conn:
            found = await conn.fetchrow(
                f"{_DEVICE} WHERE id = $1 AND agency_id = $2 FOR UPDATE", device_id, agency_id
            )
            if found is None:
                return "unknown_device"
            if not holds(_device(found)):
                return "precondition_failed"
            await conn.execute(
                "UPDATE devices SET decommissioned_at = COALESCE(decommissioned_at, now())"
                " WHERE id = $1",
                device_id,
            )
        return "decommissioned"

    async def patients(self, agency_id: str, limit: int, after: str = "") -> list[PatientRow]:
        return await self._db.patients_of(agency_id, limit, after)

    async def patient(self, agency_id: str, patient_id: str) -> PatientRow | None:
        found = await self._db.patient(patient_id)
        return found if found is not None and found.agency_id == agency_id else None

    async def put_patient(self, row: PatientRow, holds: PatientPrecondition) -> Written:
        """Register or change a patient (her name sealed as the registry seals it), if
        ``holds`` for her as she stands; a forgotten patient is not written again."""
        if not known_zone(row.zone):
            return "unknown_zone"
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('patient-record:' || $1))", row.id
            )
            current = await self._db.patient(row.id)
            if current is not None and current.agency_id != row.agency_id:
                return "other_agency"
            if current is not None and current.forgotten:
                return "forgotten"
            if not holds(current):
                return "precondition_failed"
            await self._db.upsert_patients([row])
        return "created" if current is None else "replaced"

    async def agency_known(self, agency_id: str) -> bool:
        return bool(await self._db.pool.fetchval("SELECT 1 FROM agencies WHERE id = $1", agency_id))

    async def agency(self, agency_id: str) -> AgencyRow | None:
        name = await self._db.pool.fetchval("SELECT name FROM agencies WHERE id = $1", agency_id)
        return None if name is None else AgencyRow(agency_id, name)

    async def put_agency(self, row: AgencyRow, holds: AgencyPrecondition) -> Written:
        """Register the agency or rename it, if ``holds`` for it as it stands."""
        async with self._db.transaction() as conn:
            name = await conn.fetchval("SELECT name FROM agencies WHERE id = $1 FOR UPDATE", row.id)
            current = None if name is None else AgencyRow(row.id, name)
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                "INSERT INTO agencies(id, name) VALUES ($1, $2)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
                row.id,
                row.name,
            )
        return "created" if current is None else "replaced"
