"""An agency's roster as its HTTP API reads and writes it: caregivers' certificates and shifts,
patients' own fences, and the visits. Every write checks the agency and the precondition (the
version a client last read) and writes in one transaction, under a lock, as
:class:`adapters.storage.directory.Directory` does for people.

Visits are written under the agency's roster lock, their existing rows locked too, so the visit
keeper's conditional saves (``VisitStore.save``, on ``version``) and a dispatcher's change cannot
cross: a change bumps ``version``, and a keeper holding the record as it was reads it again. A
visit's versions never repeat: a cancelled visit's row goes, its last version kept
(``cancelled_visits``, migration 19), and a visit created again with its id starts after it,
so a version read of the one cancelled never holds against the one made since. A
batch of visits (a week's file) is judged whole before anything is written: one bad row and
nothing is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import asyncpg

from adapters.storage.postgres import Conn, Database, ts

Written = Literal["created", "replaced", "unknown_caregiver", "precondition_failed"]
Removed = Literal["deleted", "unknown", "precondition_failed", "visit_begun"]
VisitProblem = Literal[
    "other_agency",
    "unknown_patient",
    "forgotten",
    "unknown_caregiver",
    "precondition_failed",
    "visit_begun",
    "visit_over",
]
BEGUN_MAY_CHANGE = ("tasks", "ends_at")
"""What may still change of a visit under way (``en_route``, ``arrived``, ``in_visit``)."""
OVER = ("left", "missed")


@dataclass(frozen=True, slots=True)
class CertificateRow:
    caregiver_id: str
    kind: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ShiftRow:
    id: int
    caregiver_id: str
    starts_at: float
    ends_at: float


@dataclass(frozen=True, slots=True)
class FenceRow:
    """A patient's own fence: a radius about her home, or a GeoJSON polygon."""

    patient_id: str
    radius_m: float | None
    geojson: Any


@dataclass(frozen=True, slots=True)
class VisitPlan:
    """What a dispatcher writes of a visit: who, to whom, when, what for."""

    id: str
    agency_id: str
    patient_id: str
    caregiver_id: str
    starts_at: float
    ends_at: float
    service: str = "home_care"
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VisitRow:
    """A visit as it stands: its plan, and what the visit keeper has made of it."""

    plan: VisitPlan
    state: str
    checked_in_at: float | None
    checked_out_at: float | None
    version: int


@dataclass(slots=True)
class Batch:
    """What writing a batch of visits did: every bad one (its index in the batch and why), or,
    with none bad, how many were created, changed and left as they were."""

    bad: list[tuple[int, VisitProblem]] = field(default_factory=list)
    created: int = 0
    changed: int = 0
    unchanged: int = 0


VisitPrecondition = Callable[[VisitRow | None], bool]
PlanPrecondition = Callable[[VisitPlan, VisitRow | None], bool]
"""A plan's precondition, judged on its visit as it stands (None: not on the roster): one for
every plan of a batch (a single visit's ``If-Match``), or each plan its own (a row's version)."""

_VISIT = (
    "SELECT id, agency_id, patient_id, caregiver_id, service, tasks, starts_at, ends_at, state,"
    " (check_in->>'at')::float8 AS checked_in_at, (check_out->>'at')::float8 AS checked_out_at,"
    " version FROM visits"
)


def _visit(r: asyncpg.Record) -> VisitRow:
    plan = VisitPlan(
        r["id"],
        r["agency_id"],
        r["patient_id"],
        r["caregiver_id"],
        r["starts_at"].timestamp(),
        r["ends_at"].timestamp(),
        r["service"],
        tuple(r["tasks"]),
    )
    return VisitRow(plan, r["state"], r["checked_in_at"], r["checked_out_at"], r["version"])


class _Raced(Exception):
    """A visit id taken by another agency between the look and the write."""

    def __init__(self, visit_id: str) -> None:
        super().__init__(visit_id)
        self.visit_id = visit_id


class Schedule:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _caregiver_known(self, conn: Conn, agency_id: str, caregiver_id: str) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT 1 FROM caregivers WHERE id = $1 AND agency_id = $2",
                caregiver_id,
                agency_id,
            )
        )

    async def caregiver_known(self, agency_id: str, caregiver_id: str) -> bool:
        async with self._db.pool.acquire() as conn:
            return await self._caregiver_known(conn, agency_id, caregiver_id)

    # ------------------------------------------------------------ certificates

    async def certificates(
        self, caregiver_id: str, limit: int, after: str = ""
    ) -> list[CertificateRow]:
        """A page of her certificates: kinds after ``after``, in kind order."""
        rows = await self._db.pool.fetch(
            "SELECT caregiver_id, kind, expires_at FROM certificates"
            " WHERE caregiver_id = $1 AND kind > $2 ORDER BY kind LIMIT $3",
            caregiver_id,
            after,
            limit,
        )
        return [_certificate(r) for r in rows]

    async def certificate(self, caregiver_id: str, kind: str) -> CertificateRow | None:
        r = await self._db.pool.fetchrow(
            "SELECT caregiver_id, kind, expires_at FROM certificates"
            " WHERE caregiver_id = $1 AND kind = $2",
            caregiver_id,
            kind,
        )
        return None if r is None else _certificate(r)

    async def put_certificate(
        self,
        agency_id: str,
        row: CertificateRow,
        holds: Callable[[CertificateRow | None], bool],
    ) -> Written:
        """Give her a certificate or change its expiry, if ``holds`` for it as it stands."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('certificate:' || $1 || ':' || $2))",
                row.caregiver_id,
                row.kind,
            )
            if not await self._caregiver_known(conn, agency_id, row.caregiver_id):
                return "unknown_caregiver"
            found = await conn.fetchrow(
                "SELECT caregiver_id, kind, expires_at FROM certificates"
                " WHERE caregiver_id = $1 AND kind = $2 FOR UPDATE",
                row.caregiver_id,
                row.kind,
            )
            current = None if found is None else _certificate(found)
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                "INSERT INTO certificates(caregiver_id, kind, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (caregiver_id, kind) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                row.caregiver_id,
                row.kind,
                ts(row.expires_at),
            )
        return "created" if current is None else "replaced"

    async def delete_certificate(
        self,
        agency_id: str,
        caregiver_id: str,
        kind: str,
        holds: Callable[[CertificateRow], bool],
    ) -> Removed:
        async with self._db.transaction() as conn:
            if not await self._caregiver_known(conn, agency_id, caregiver_id):
                return "unknown"
            found = await conn.fetchrow(
                "SELECT caregiver_id, kind, expires_at FROM certificates"
                " WHERE caregiver_id = $1 AND kind = $2 FOR UPDATE",
                caregiver_id,
                kind,
            )
            if found is None:
                return "unknown"
            if not holds(_certificate(found)):
                return "precondition_failed"
            await conn.execute(
                "DELETE FROM certificates WHERE caregiver_id = $1 AND kind = $2",
                caregiver_id,
                kind,
            )
        return "deleted"

    # ------------------------------------------------------------ shifts

    async def shifts(
        self, caregiver_id: str, start: float, end: float, limit: int, after: int = 0
    ) -> list[ShiftRow]:
        """A page of her shifts meeting [``start``, ``end``): ids after ``after``, in id order."""
        rows = await self._db.pool.fetch(
            "SELECT id, caregiver_id, starts_at, ends_at FROM shifts WHERE caregiver_id = $1"
            " AND ends_at > $2 AND starts_at < $3 AND id > $4 ORDER BY id LIMIT $5",
            caregiver_id,
            ts(start),
            ts(end),
            after,
            limit,
        )
        return [ShiftRow(r[0], r[1], r[2].timestamp(), r[3].timestamp()) for r in rows]

    async def add_shift(
        self, agency_id: str, caregiver_id: str, start: float, end: float
    ) -> ShiftRow | None:
        """Her new shift (None: she is not the agency's)."""
        async with self._db.transaction() as conn:
            if not await self._caregiver_known(conn, agency_id, caregiver_id):
                return None
            shift_id = await conn.fetchval(
                "INSERT INTO shifts(caregiver_id, starts_at, ends_at) VALUES ($1, $2, $3)"
                " RETURNING id",
                caregiver_id,
                ts(start),
                ts(end),
            )
        return ShiftRow(shift_id, caregiver_id, start, end)

    async def delete_shift(self, agency_id: str, caregiver_id: str, shift_id: int) -> bool:
        """Whether her shift was there to delete."""
        deleted = await self._db.pool.fetchval(
            "DELETE FROM shifts s USING caregivers c WHERE s.id = $1 AND s.caregiver_id = $2"
            " AND c.id = s.caregiver_id AND c.agency_id = $3 RETURNING s.id",
            shift_id,
            caregiver_id,
            agency_id,
        )
        return deleted is not None

    # ------------------------------------------------------------ fences

    async def fence(self, patient_id: str) -> FenceRow | None:
        """Her own fence (None: the default circle about her home)."""
        r = await self._db.pool.fetchrow(
            "SELECT patient_id, radius_m, geojson FROM fences WHERE patient_id = $1", patient_id
        )
        return None if r is None else _fence(r)

    async def put_fence(
        self, agency_id: str, row: FenceRow, holds: Callable[[FenceRow | None], bool]
    ) -> Literal["created", "replaced", "unknown_patient", "precondition_failed"]:
        """Give her home its own fence, if ``holds`` for her fence as it stands."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('fence:' || $1))", row.patient_id
            )
            whose = await conn.fetchval(
                "SELECT agency_id FROM patients WHERE id = $1 AND forgotten_at IS NULL",
                row.patient_id,
            )
            if whose != agency_id:
                return "unknown_patient"
            found = await conn.fetchrow(
                "SELECT patient_id, radius_m, geojson FROM fences WHERE patient_id = $1 FOR UPDATE",
                row.patient_id,
            )
            current = None if found is None else _fence(found)
            if not holds(current):
                return "precondition_failed"
            await conn.execute(
                "INSERT INTO fences(patient_id, radius_m, geojson, updated_at)"
                " VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (patient_id) DO UPDATE SET"
                " radius_m = EXCLUDED.radius_m, geojson = EXCLUDED.geojson, updated_at = now()",
                row.patient_id,
                row.radius_m,
                None if row.geojson is None else json.dumps(row.geojson),
            )
        return "created" if current is None else "replaced"

    # ------------------------------------------------------------ visits

    async def visit(self, agency_id: str, visit_id: str) -> VisitRow | None:
        r = await self._db.pool.fetchrow(
            f"{_VISIT} WHERE id = $1 AND agency_id = $2", visit_id, agency_id
        )
        return None if r is None else _visit(r)

    async def visits(
        self,
        agency_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        caregiver_id: str | None = None,
        patient_id: str | None = None,
        state: str | None = None,
        limit: int,
        after: str = "",
    ) -> list[VisitRow]:
        """A page of the agency's visits starting in [``start``, ``end``) and of the caregiver,
        patient and state given (each only if given): ids after ``after``, in id order."""
        rows = await self._db.pool.fetch(
            f"{_VISIT} WHERE agency_id = $1 AND id > $2"
            " AND ($3::timestamptz IS NULL OR starts_at >= $3)"
            " AND ($4::timestamptz IS NULL OR starts_at < $4)"
            " AND ($5::text IS NULL OR caregiver_id = $5)"
            " AND ($6::text IS NULL OR patient_id = $6)"
            " AND ($7::text IS NULL OR state = $7)"
            " ORDER BY id LIMIT $8",
            agency_id,
            after,
            None if start is None else ts(start),
            None if end is None else ts(end),
            caregiver_id,
            patient_id,
            state,
            limit,
        )
        return [_visit(r) for r in rows]

    async def write_visits(
        self,
        agency_id: str,
        plans: Sequence[VisitPlan],
        holds: PlanPrecondition | None = None,
        *,
        judge_only: bool = False,
    ) -> Batch:
        """Create or change the visits, all of them or none: each judged against the visit as it
        stands (``holds``, if given, its precondition), its patient and caregiver the agency's;
        any bad one and nothing is written. A visit written as it stands is left alone.
        ``judge_only``: say which are bad, and write none in any case."""
        out = Batch()
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('visits:' || $1))", agency_id
                )
                ids = [p.id for p in plans]
                current = {
                    r["id"]: _visit(r)
                    for r in await conn.fetch(
                        f"{_VISIT} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids
                    )
                }
                patients = {
                    r[0]: r[1]
                    for r in await conn.fetch(
                        "SELECT id, forgotten_at IS NOT NULL FROM patients"
                        " WHERE agency_id = $1 AND id = ANY($2::text[])",
                        agency_id,
                        list({p.patient_id for p in plans}),
                    )
                }
                caregivers = {
                    r[0]
                    for r in await conn.fetch(
                        "SELECT id FROM caregivers WHERE agency_id = $1 AND id = ANY($2::text[])",
                        agency_id,
                        list({p.caregiver_id for p in plans}),
                    )
                }
                verdicts: list[str] = []
                for n, plan in enumerate(plans):
                    verdict = _judge(plan, current.get(plan.id), patients, caregivers, holds)
                    verdicts.append(verdict)
                    if verdict not in ("created", "changed", "unchanged"):
                        out.bad.append((n, cast(VisitProblem, verdict)))
                if out.bad or judge_only:
                    return out
                for plan, verdict in zip(plans, verdicts, strict=True):
                    if verdict == "created":
                        await _insert(conn, plan)
                        out.created += 1
                    elif verdict == "changed":
                        await _update(conn, plan)
                        out.changed += 1
                    else:
                        out.unchanged += 1
        except _Raced as raced:
            return Batch(
                bad=[
                    (next(n for n, p in enumerate(plans) if p.id == raced.visit_id), "other_agency")
                ]
            )
        return out

    async def cancel_visit(
        self, agency_id: str, visit_id: str, holds: VisitPrecondition
    ) -> Removed:
        """Take a visit not yet begun off the roster, its open alerts cleared and its version
        kept, for one created again with its id to start after."""
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('visits:' || $1))", agency_id)
            found = await conn.fetchrow(
                f"{_VISIT} WHERE id = $1 AND agency_id = $2 FOR UPDATE", visit_id, agency_id
            )
            if found is None:
                return "unknown"
            row = _visit(found)
            if not holds(row):
                return "precondition_failed"
            if row.state != "scheduled":
                return "visit_begun"
            await conn.execute("DELETE FROM visits WHERE id = $1", visit_id)
            await conn.execute(
                "INSERT INTO cancelled_visits(id, version) VALUES ($1, $2) ON CONFLICT (id)"
                " DO UPDATE SET version = GREATEST(cancelled_visits.version, EXCLUDED.version),"
                " cancelled_at = now()",
                visit_id,
                row.version,
            )
            await conn.execute(
                "UPDATE visit_alerts SET cleared_at = now() WHERE visit_id = $1"
                " AND cleared_at IS NULL",
                visit_id,
            )
        return "deleted"


def _judge(  # noqa: PLR0911 (one check after another, each its answer)
    plan: VisitPlan,
    found: VisitRow | None,
    patients: dict[str, bool],
    caregivers: set[str],
    holds: PlanPrecondition | None,
) -> str:
    if found is not None and found.plan.agency_id != plan.agency_id:
        return "other_agency"
    if plan.patient_id not in patients:
        return "unknown_patient"
    if patients[plan.patient_id]:
        return "forgotten"
    if plan.caregiver_id not in caregivers:
        return "unknown_caregiver"
    if holds is not None and not holds(plan, found):
        return "precondition_failed"
    if found is None:
        return "created"
    if found.plan == plan:
        return "unchanged"
    if found.state in OVER:
        return "visit_over"
    if found.state != "scheduled" and _fixed(found.plan) != _fixed(plan):
        return "visit_begun"
    return "changed"


def _fixed(plan: VisitPlan) -> tuple[object, ...]:
    """What of a visit may not change once it has begun."""
    return (plan.patient_id, plan.caregiver_id, plan.starts_at, plan.service)


async def _insert(conn: Conn, plan: VisitPlan) -> None:
    made = await conn.fetchval(
        "INSERT INTO visits(id, agency_id, patient_id, caregiver_id, service, tasks, starts_at,"
        " ends_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
        " COALESCE((SELECT version + 1 FROM cancelled_visits WHERE id = $1), 0))"
        " ON CONFLICT (id) DO NOTHING RETURNING id",
        plan.id,
        plan.agency_id,
        plan.patient_id,
        plan.caregiver_id,
        plan.service,
        list(plan.tasks),
        ts(plan.starts_at),
        ts(plan.ends_at),
    )
    if made is None:
        raise _Raced(plan.id)


async def _update(conn: Conn, plan: VisitPlan) -> None:
    await conn.execute(
        "UPDATE visits SET patient_id = $2, caregiver_id = $3, service = $4, tasks = $5,"
        " starts_at = $6, ends_at = $7, version = version + 1 WHERE id = $1",
        plan.id,
        plan.patient_id,
        plan.caregiver_id,
        plan.service,
        list(plan.tasks),
        ts(plan.starts_at),
        ts(plan.ends_at),
    )


def _certificate(r: asyncpg.Record) -> CertificateRow:
    return CertificateRow(r["caregiver_id"], r["kind"], r["expires_at"].timestamp())


def _fence(r: asyncpg.Record) -> FenceRow:
    geojson = None if r["geojson"] is None else json.loads(r["geojson"])
    return FenceRow(r["patient_id"], r["radius_m"], geojson)
