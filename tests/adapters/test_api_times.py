"""The times the HTTP API takes lie from 1900 until 3000 in UTC (``api.windows``), on the real
Postgres and Redis: a time at the calendar's ends, the year 1 at +23:59 (before the calendar
starts, in UTC) or the year 9999 at -23:59 (after it ends), in a body or a query, is 400
``malformed`` naming where, as a day there is in ``?day=`` (the visits' and a patient's
doses'); each of them failed its route (a
500) before. A time at the ends in a roster file's row is that row's ``bad_starts_at``."""

from __future__ import annotations

import time
import uuid
from datetime import time as dt_time
from typing import Any

import httpx
import pytest

from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from kernel.contracts import Role
from kernel.settings import Settings
from medication.doses import Schedule, ScheduledDose
from tests.support import bearer

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:6]
AGENCY = f"tm-{TAG}"
CG, PATIENT = f"{AGENCY}.cg", f"{AGENCY}.p"
A = f"/v1/agencies/{AGENCY}"
EARLY = ("0001-01-01T00:00:00+23:59", "0001-01-01T01:00:00+23:59")
LATE = ("9999-12-31T20:00:00-23:59", "9999-12-31T22:00:00-23:59")


def visit(ends: tuple[str, str]) -> dict[str, Any]:
    return {"patient_id": PATIENT, "caregiver_id": CG, "starts_at": ends[0], "ends_at": ends[1]}


CASES: list[tuple[str, str, dict[str, str], Any, str]] = [
    ("GET", f"{A}/visits", {"day": "9999-12-31", "zone": "Etc/GMT+12"}, None, "day"),
    ("GET", f"{A}/visits", {"day": "0001-01-01", "zone": "Etc/GMT-14"}, None, "day"),
    ("GET", f"{A}/patients/{PATIENT}/medication/day", {"day": "0001-01-01"}, None, "day"),
    ("GET", f"{A}/patients/{PATIENT}/medication/day", {"day": "9999-12-31"}, None, "day"),
    ("GET", f"{A}/caregivers/{CG}/track", {"since": EARLY[0], "until": EARLY[1]}, None, "since"),
    ("GET", f"{A}/caregivers/{CG}/track", {"since": LATE[0], "until": LATE[1]}, None, "since"),
    ("GET", f"{A}/incidents", {"since": EARLY[0]}, None, "since"),
    ("GET", f"{A}/incidents", {"until": LATE[1]}, None, "until"),
    ("GET", f"{A}/visit-report", {"since": EARLY[0], "until": EARLY[1]}, None, "since"),
    ("GET", f"{A}/caregivers/{CG}/shifts", {"from": EARLY[0]}, None, "from"),
    ("GET", f"{A}/caregivers/{CG}/shifts", {"from": LATE[0]}, None, "from"),
    (
        "POST",
        f"{A}/caregivers/{CG}/shifts",
        {},
        dict(zip(("starts_at", "ends_at"), EARLY, strict=True)),
        "starts_at",
    ),
    (
        "POST",
        f"{A}/caregivers/{CG}/shifts",
        {},
        dict(zip(("starts_at", "ends_at"), LATE, strict=True)),
        "starts_at",
    ),
    (
        "PUT",
        f"{A}/caregivers/{CG}/certificates/first_aid",
        {},
        {"expires_at": EARLY[0]},
        "expires_at",
    ),
    ("PUT", f"{A}/visits/{AGENCY}.v1", {}, visit(EARLY), "starts_at"),
    ("PUT", f"{A}/visits/{AGENCY}.v2", {}, visit(LATE), "starts_at"),
]


@pytest.fixture(scope="module")
async def agency(db: Database) -> None:
    await db.upsert_agency(AGENCY, AGENCY)
    await db.upsert_caregivers([CaregiverRow(CG, AGENCY, "Cara")])
    await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Ada", 53.8, -1.55)])
    digoxin = Schedule(PATIENT, (ScheduledDose("digoxin", dt_time(8)),), zone="Europe/London")
    await MedicationStore(db).replace_schedule(digoxin, time.time(), lambda current: True)


def case_id(case: tuple[str, str, dict[str, str], Any, str]) -> str:
    """A case's name, the same in every worker (the agency's tag is the run's own)."""
    method, path, query, _, field = case
    return f"{method} {path.removeprefix(A).replace(TAG, 'tag')} {field}={query.get(field, 'body')}"


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "field"), CASES, ids=[case_id(c) for c in CASES]
)
async def test_a_time_at_the_calendars_ends_is_malformed(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: None,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    field: str,
) -> None:
    who: Role = "admin" if "certificates" in path else "dispatcher"
    answer = await api.request(
        method, path, params=query, json=body, headers=bearer(settings, who, "desk", AGENCY)
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == "malformed"
    assert any(
        e["at"][-1] == field and "from 1900 until 3000" in e["problem"]
        for e in answer.json()["detail"]
    )


async def test_a_roster_files_row_at_the_calendars_ends_is_a_bad_row(
    api: httpx.AsyncClient, settings: Settings, agency: None
) -> None:
    head = "visit_id,patient_id,caregiver_id,starts_at,ends_at"
    rows = [f"v{n},{PATIENT},{CG},{s},{e}" for n, (s, e) in enumerate((EARLY, LATE))]
    answer = await api.post(
        f"{A}/visits:import",
        content="\n".join([head, *rows]).encode(),
        headers={"Content-Type": "text/csv", **bearer(settings, "dispatcher", "desk", AGENCY)},
    )
    assert answer.status_code == 422, answer.text
    assert [(r["line"], r["reason"]) for r in answer.json()["detail"]] == [
        (2, "bad_starts_at"),
        (3, "bad_starts_at"),
    ]
