"""OwnTracks phones as an agency's HTTP API registers them: ``owntracks/{user}/{device}`` mapped to
a caregiver of the agency (``owntracks_devices``, which ingest reads to tell whose fix it is).

An OwnTracks user is one caregiver's: the broker knows her by her user name alone (one client for
all her phones), so every phone of a user is the same caregiver's, and a user whose phones are
another caregiver's, or another agency's, is refused. Writes hold only when their precondition
does (the version a client last read), under a lock on the user, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from adapters.storage.postgres import Database

PhoneWritten = Literal[
    "created",
    "replaced",
    "precondition_failed",
    "unknown_caregiver",
    "other_agency",
    "another_caregivers_user",
]


@dataclass(frozen=True, slots=True)
class PhoneRow:
    user: str
    device: str
    caregiver_id: str
    agency_id: str

    @property
    def id(self) -> str:
        """``{user}/{device}``: the phone's place in its topic, and its order in a page."""
        return f"{self.user}/{self.device}"


PhonePrecondition = Callable[[PhoneRow | None], bool]

_SELECT = (
    'SELECT d."user", d.device, d.caregiver_id, c.agency_id FROM owntracks_devices d'
    " JOIN caregivers c ON c.id = d.caregiver_id"
)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('owntracks:' || $1))"
"""A user's phones are written one at a time."""


def _phone(r: object) -> PhoneRow:
    row = dict(r)  # type: ignore[call-overload]
    return PhoneRow(row["user"], row["device"], row["caregiver_id"], row["agency_id"])


class Phones:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(self, agency_id: str, limit: int, after: str = "") -> list[PhoneRow]:
        """A page of the agency's phones: ``{user}/{device}`` after ``after``, in that order."""
        rows = await self._db.pool.fetch(
            f"{_SELECT} WHERE c.agency_id = $1 AND (d.\"user\" || '/' || d.device) > $2"
            " ORDER BY d.\"user\" || '/' || d.device LIMIT $3",
            agency_id,
            after,
            limit,
        )
        return [_phone(r) for r in rows]

    async def one(self, agency_id: str, user: str, device: str) -> PhoneRow | None:
        row = await self._db.pool.fetchrow(
            f'{_SELECT} WHERE d."user" = $1 AND d.device = $2 AND c.agency_id = $3',
            user,
            device,
            agency_id,
        )
        return None if row is None else _phone(row)

    async def put(self, row: PhoneRow, holds: PhonePrecondition) -> PhoneWritten:
        """Register the phone to its caregiver, or give it to another caregiver of the agency,
        if ``holds`` for the phone as it stands; its user's other phones must be that
        caregiver's too."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('owntracks:' || $1))", row.user
            )
            whose = await conn.fetchval(
                "SELECT agency_id FROM caregivers WHERE id = $1", row.caregiver_id
            )
            if whose != row.agency_id:
                return "unknown_caregiver"
            users = await conn.fetch(f'{_SELECT} WHERE d."user" = $1 FOR UPDATE OF d', row.user)
            phones = [_phone(r) for r in users]
            if any(p.agency_id != row.agency_id for p in phones):
                return "other_agency"
            current = next((p for p in phones if p.device == row.device), None)
            others = [p for p in phones if p.device != row.device]
            if any(p.caregiver_id != row.caregiver_id for p in others):
                return "another_caregivers_user"
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                'INSERT INTO owntracks_devices("user", device, caregiver_id) VALUES ($1, $2, $3)'
                ' ON CONFLICT ("user", device) DO UPDATE SET caregiver_id = EXCLUDED.caregiver_id',
                row.user,
                row.device,
                row.caregiver_id,
            )
        return "created" if current is None else "replaced"

    async def delete(
        self, agency_id: str, user: str, device: str, holds: PhonePrecondition
    ) -> bool:
        """Decommission the phone, if it is the agency's and ``holds`` for it as it stands."""
        async with self._db.transaction() as conn:
            await conn.execute(_LOCK, user)
            found = await conn.fetchrow(
                f'{_SELECT} WHERE d."user" = $1 AND d.device = $2 AND c.agency_id = $3',
                user,
                device,
                agency_id,
            )
            if found is None or not holds(_phone(found)):
                return False
            await conn.execute(
                'DELETE FROM owntracks_devices WHERE "user" = $1 AND device = $2', user, device
            )
        return True

    async def others_of(self, user: str, device: str) -> int:
        """How many phones the user has beside this one."""
        n = await self._db.pool.fetchval(
            'SELECT count(*) FROM owntracks_devices WHERE "user" = $1 AND device <> $2',
            user,
            device,
        )
        return int(n)
