"""Text with a NUL (U+0000) in it, which no Postgres text nor JSON value holds, on the real
Postgres and Redis: in an agency's or a caregiver's name, her skills, a dose's name, a visit's
service or tasks, a resolution's note, the alarms' ``?kind=`` or any list's ``?after=``, it is
400 ``malformed`` naming where; in a roster file's service or tasks, that row's
``bad_service`` or ``bad_tasks``; a fence's polygon keeps its type and positions alone, so a
member of it with a NUL is not kept. Each of them failed its route (a 500) before."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from kernel.contracts import Role
from kernel.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:6]
AGENCY = f"nul-{TAG}"
CG, PATIENT = f"{AGENCY}.cg", f"{AGENCY}.p"
A = f"/v1/agencies/{AGENCY}"
NUL = "a\x00b"
VISIT = {
    "patient_id": PATIENT,
    "caregiver_id": CG,
    "starts_at": "2031-01-01T09:00:00Z",
    "ends_at": "2031-01-01T10:00:00Z",
}
SQUARE = [[-1.5505, 53.8], [-1.5495, 53.8], [-1.5495, 53.8005], [-1.5505, 53.8005], [-1.5505, 53.8]]

CASES: list[tuple[Role, str, str, dict[str, str], Any, list[str]]] = [
    ("admin", "PUT", A, {}, {"name": NUL}, ["body", "name"]),
    ("admin", "PUT", f"{A}/caregivers/{AGENCY}.c2", {}, {"name": NUL}, ["body", "name"]),
    (
        "admin",
        "PUT",
        f"{A}/caregivers/{AGENCY}.c3",
        {},
        {"name": "Cara", "skills": [NUL]},
        ["body", "skills", "0"],
    ),
    (
        "dispatcher",
        "PUT",
        f"{A}/patients/{PATIENT}/medication",
        {},
        {"doses": [{"name": NUL, "at": "08:00"}]},
        ["body", "doses", "0", "name"],
    ),
    (
        "dispatcher",
        "PUT",
        f"{A}/visits/{AGENCY}.v1",
        {},
        {**VISIT, "service": NUL},
        ["body", "service"],
    ),
    (
        "dispatcher",
        "PUT",
        f"{A}/visits/{AGENCY}.v2",
        {},
        {**VISIT, "tasks": ["meds", NUL]},
        ["body", "tasks", "1"],
    ),
    (
        "dispatcher",
        "POST",
        f"{A}/incidents/{AGENCY}.i/resolve",
        {},
        {"note": NUL},
        ["body", "note"],
    ),
    ("dispatcher", "GET", f"{A}/alarms", {"kind": NUL}, None, ["query", "kind"]),
    ("dispatcher", "GET", f"{A}/caregivers", {"after": NUL}, None, ["query", "after"]),
    ("dispatcher", "GET", f"{A}/visits", {"after": NUL}, None, ["query", "after"]),
    ("dispatcher", "GET", f"{A}/incidents", {"after": NUL}, None, ["query", "after"]),
]


@pytest.fixture(scope="module")
async def agency(db: Database) -> None:
    await db.upsert_agency(AGENCY, AGENCY)
    await db.upsert_caregivers([CaregiverRow(CG, AGENCY, "Cara")])
    await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Ada", 53.8, -1.55)])


def case_id(case: tuple[Role, str, str, dict[str, str], Any, list[str]]) -> str:
    """A case's name, the same in every worker (the agency's tag is the run's own)."""
    who, method, path, _, _, at = case
    return f"{who} {method} {path.replace(TAG, 'tag')} {'.'.join(at)}"


@pytest.mark.parametrize(
    ("who", "method", "path", "query", "body", "at"), CASES, ids=[case_id(c) for c in CASES]
)
async def test_text_with_a_nul_is_malformed(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: None,
    who: Role,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    at: list[str],
) -> None:
    answer = await api.request(
        method, path, params=query, json=body, headers=bearer(settings, who, "desk", AGENCY)
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == "malformed"
    assert [e["at"] for e in answer.json()["detail"]] == [at]


async def test_a_roster_files_text_with_a_nul_is_a_bad_row(
    api: httpx.AsyncClient, settings: Settings, agency: None
) -> None:
    times = "2031-01-01T09:00:00Z,2031-01-01T10:00:00Z"
    rows = [f"v1,{PATIENT},{CG},{times},{NUL},", f"v2,{PATIENT},{CG},{times},care,meds;{NUL}"]
    answer = await api.post(
        f"{A}/visits:import",
        content="\n".join(
            ["visit_id,patient_id,caregiver_id,starts_at,ends_at,service,tasks", *rows]
        ),
        headers={"Content-Type": "text/csv", **bearer(settings, "dispatcher", "desk", AGENCY)},
    )
    assert answer.status_code == 422, answer.text
    assert [(r["line"], r["reason"]) for r in answer.json()["detail"]] == [
        (2, "bad_service"),
        (3, "bad_tasks"),
    ]


async def test_a_fences_polygon_keeps_its_type_and_positions_alone(
    api: httpx.AsyncClient, settings: Settings, agency: None
) -> None:
    polygon = {"type": "Polygon", "coordinates": [SQUARE], "name": NUL, NUL: 1}
    desk = bearer(settings, "dispatcher", "desk", AGENCY)
    answer = await api.put(f"{A}/patients/{PATIENT}/fence", json={"polygon": polygon}, headers=desk)
    assert answer.status_code in (200, 201), answer.text
    kept = {"type": "Polygon", "coordinates": [SQUARE]}
    assert answer.json()["polygon"] == kept
    read = await api.get(f"{A}/patients/{PATIENT}/fence", headers=desk)
    assert read.json()["polygon"] == kept and read.headers["ETag"] == answer.headers["ETag"]
