"""The HTTP API's medication schedules, on the real Postgres and Redis: a dispatcher sets a
patient's doses (read back as the devices worker reads them), replaces them only against the
version she read, and reads what became of a day's doses; a schedule that cannot be is a 400
that says where, another agency's patient a 404, a caregiver refused."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import Database, PatientRow
from kernel import tokens
from kernel.contracts import Role
from kernel.settings import Settings
from tests import support

pytestmark = pytest.mark.servers

PLAN: dict[str, Any] = {
    "doses": [
        {"name": "digoxin", "at": "08:00", "critical": True},
        {"name": "paracetamol", "at": "13:30", "window_s": 3600},
    ]
}


@pytest.fixture
async def patient(db: Database) -> tuple[str, str]:
    agency = f"apm-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency, "Medication Care")
    await db.upsert_patients(
        [PatientRow(f"{agency}.p", agency, "Ada", 53.8, -1.55, "Europe/Paris")]
    )
    return agency, f"{agency}.p"


def bearer(settings: Settings, agency: str, role: Role = "dispatcher") -> dict[str, str]:
    return support.bearer(settings, role, f"{role}-1", agency)


async def test_a_schedule_is_set_read_back_and_replaced_against_its_version(
    api: httpx.AsyncClient, settings: Settings, patient: tuple[str, str], db: Database
) -> None:
    agency, pid = patient
    url, desk = f"/v1/agencies/{agency}/patients/{pid}/medication", bearer(settings, agency)
    none_yet = await api.get(url, headers=desk)
    assert none_yet.json() == {
        "patient_id": pid, "zone": "Europe/Paris", "doses": [],
        "call_at_fraction": 0.5, "on_time_s": 300.0,
    }  # fmt: skip
    first = await api.put(url, json=PLAN, headers={**desk, "If-Match": none_yet.headers["ETag"]})
    assert first.status_code == 200, first.text
    kept = await MedicationStore(db).schedule(pid)
    assert kept is not None and kept.zone == "Europe/Paris"  # her home's
    assert [(d.name, d.at.isoformat("minutes"), d.window_s, d.critical) for d in kept.doses] == [
        ("digoxin", "08:00", 900.0, True),
        ("paracetamol", "13:30", 3600.0, False),
    ]

    blind = await api.put(url, json={"doses": []}, headers=desk)
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    stale = await api.put(
        url, json={"doses": []}, headers={**desk, "If-Match": none_yet.headers["ETag"]}
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    replaced = await api.put(
        url, json={"doses": PLAN["doses"][:1]}, headers={**desk, "If-Match": first.headers["ETag"]}
    )
    assert replaced.status_code == 200 and len(replaced.json()["doses"]) == 1
    read = await api.get(url, headers=desk)
    assert read.headers["ETag"] == replaced.headers["ETag"]


async def test_a_days_doses_and_what_became_of_them(
    api: httpx.AsyncClient, settings: Settings, patient: tuple[str, str]
) -> None:
    agency, pid = patient
    url, desk = f"/v1/agencies/{agency}/patients/{pid}/medication", bearer(settings, agency)
    assert (await api.put(url, json=PLAN, headers=desk)).status_code == 200
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    day = await api.get(f"{url}/day", params={"day": tomorrow}, headers=desk)
    assert [(d["name"], d["critical"], d["outcome"]) for d in day.json()] == [
        ("digoxin", True, "pending"),
        ("paracetamol", False, "pending"),
    ]
    family = tokens.mint(
        tokens.keyring_of(settings), "family", "f", agency, 600, time.time(), [pid]
    )
    hers = await api.get(
        f"{url}/day", params={"day": tomorrow}, headers={"Authorization": f"Bearer {family}"}
    )
    assert hers.json() == day.json()  # her family reads her day, not her schedule
    plan = await api.get(url, headers={"Authorization": f"Bearer {family}"})
    assert (plan.status_code, plan.json()["reason"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "body",
    [
        {"doses": [{"name": "a", "at": "08:00"}, {"name": "a", "at": "08:00"}]},
        {"doses": [{"name": "a", "at": "25:00"}]},
        {"doses": [{"name": "a", "at": "08:00", "window_s": 0}]},
        {"doses": [{"name": f"d{i}", "at": f"{i % 24:02d}:00"} for i in range(25)]},
        {"doses": [], "call_at_fraction": 1.5},
    ],
)
async def test_a_schedule_that_cannot_be_is_malformed_and_nothing_is_written(
    api: httpx.AsyncClient, settings: Settings, patient: tuple[str, str], db: Database, body: Any
) -> None:
    agency, pid = patient
    url = f"/v1/agencies/{agency}/patients/{pid}/medication"
    refused = await api.put(url, json=body, headers=bearer(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (400, "malformed")
    assert await MedicationStore(db).schedule(pid) is None


async def test_who_may_not_is_refused(
    api: httpx.AsyncClient, settings: Settings, patient: tuple[str, str]
) -> None:
    agency, pid = patient
    url = f"/v1/agencies/{agency}/patients/{pid}/medication"
    carer = await api.put(url, json=PLAN, headers=bearer(settings, agency, "caregiver"))
    assert (carer.status_code, carer.json()["reason"]) == (403, "forbidden")
    unknown = await api.get(
        f"{url}x".replace("/medicationx", "x/medication"), headers=bearer(settings, agency)
    )
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_patient")
