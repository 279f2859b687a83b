"""The HTTP API's patients, on the real Postgres and Redis: an admin registers a patient, her
name and details (address, how to get in, notes, family) sealed in the record and shown to her
agency unsealed, each read kept in the access log; changes her home against the version she read,
lists them a page at a time; an unknown time zone, another agency's id, a forgotten patient and
another agency's token are refused with their reason."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from adapters.storage.access_log import AccessLog
from adapters.storage.postgres import Database
from kernel.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.servers


@pytest.fixture
async def agency(db: Database) -> str:
    agency_id = f"app-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Patient Care")
    return agency_id


def desk(settings: Settings, agency: str) -> dict[str, str]:
    return bearer(settings, "admin", "desk", agency)


HOME = {"name": "Ada Lovelace", "lat": 53.8, "lon": -1.55, "zone": "Europe/London"}
NO_DETAILS = {"address": "", "access": "", "notes": "", "family": []}
DETAILS: dict[str, Any] = {
    "address": "12 Wharf Street, Leeds LS2 7EQ",
    "access": "key safe by the back door, code 4817",
    "notes": "hard of hearing: knock loudly",
    "family": [{"name": "Mary Somerville", "relation": "daughter", "phone": "+44 7700 900123"}],
}


async def test_her_details_are_sealed_shown_to_her_agency_and_every_read_is_kept(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    url = f"/v1/agencies/{agency}/patients/{agency}.pd"
    made = await api.put(url, json={**HOME, "details": DETAILS}, headers=desk(settings, agency))
    assert made.status_code == 201, made.text
    shown = made.json()["details"]
    assert shown == {**DETAILS, "family": [{**DETAILS["family"][0], "email": ""}]}
    raw = await db.pool.fetchval(
        "SELECT details_sealed FROM patients WHERE id = $1", f"{agency}.pd"
    )
    for plain in (b"Wharf", b"4817", b"Somerville", b"7700", b"hearing"):
        assert plain not in bytes(raw)
    before = len(await AccessLog(db).of_patient(agency, f"{agency}.pd"))
    read = await api.get(url, headers=desk(settings, agency))
    assert read.json()["details"] == shown
    await api.get(f"/v1/agencies/{agency}/patients", headers=desk(settings, agency))
    reads = await AccessLog(db).of_patient(agency, f"{agency}.pd")
    assert len(reads) == before + 2  # her record, then the page she is on
    assert {(r.role, r.subject, r.via, r.what) for r in reads[:2]} == {
        ("admin", "desk", "api", "read")
    }

    await db.forget_patient(f"{agency}.pd", "test", time.time())
    gone = await api.get(url, headers=desk(settings, agency))
    assert gone.json()["details"] == NO_DETAILS
    assert "Wharf" not in gone.text and "Somerville" not in gone.text


@pytest.mark.parametrize(
    "details",
    [
        {"address": "x", "ssn": "123"},  # a field no one seals
        {"family": [{"relation": "son"}]},  # a contact without a name
        {"family": [{"name": "n"}] * 21},
        {"notes": "x" * 4001},
    ],
)
async def test_details_that_are_not_hers_to_keep_are_malformed(
    api: httpx.AsyncClient, settings: Settings, agency: str, details: dict[str, object]
) -> None:
    url = f"/v1/agencies/{agency}/patients/{agency}.bad"
    refused = await api.put(url, json={**HOME, "details": details}, headers=desk(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (400, "malformed")
    assert "123" not in refused.text  # the values are not echoed
    assert (await api.get(url, headers=desk(settings, agency))).status_code == 404


async def test_a_patient_is_registered_sealed_and_changed_against_her_version(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    url = f"/v1/agencies/{agency}/patients/{agency}.p1"
    made = await api.put(url, json=HOME, headers=desk(settings, agency))
    assert made.status_code == 201, made.text
    assert made.json() == {
        "id": f"{agency}.p1",
        "agency_id": agency,
        "forgotten": False,
        "details": NO_DETAILS,
        **HOME,
    }
    raw = await db.pool.fetchrow("SELECT * FROM patients WHERE id = $1", f"{agency}.p1")
    assert raw is not None and b"Ada" not in bytes(raw["name_sealed"])  # sealed in the record
    read = await api.get(url, headers=desk(settings, agency))
    assert read.json()["name"] == "Ada Lovelace"

    moved = {**HOME, "lat": 53.81}
    changed = await api.put(
        url, json=moved, headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert changed.status_code == 200 and changed.json()["lat"] == 53.81
    stale = await api.put(
        url, json=HOME, headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")

    await db.forget_patient(f"{agency}.p1", "test", time.time())
    gone = await api.get(url, headers=desk(settings, agency))
    assert gone.json()["forgotten"] is True and "Ada" not in gone.text
    again = await api.put(
        url, json=HOME, headers={**desk(settings, agency), "If-Match": gone.headers["ETag"]}
    )
    assert (again.status_code, again.json()["reason"]) == (422, "forgotten")


async def test_patients_come_a_page_at_a_time(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    for i in (2, 3, 1):
        put = await api.put(
            f"/v1/agencies/{agency}/patients/{agency}.p{i}",
            json=HOME,
            headers=desk(settings, agency),
        )
        assert put.status_code == 201
    first = (
        await api.get(
            f"/v1/agencies/{agency}/patients", params={"limit": 2}, headers=desk(settings, agency)
        )
    ).json()
    rest = (
        await api.get(
            f"/v1/agencies/{agency}/patients",
            params={"limit": 2, "after": first["next"]},
            headers=desk(settings, agency),
        )
    ).json()
    ids = [p["id"] for p in first["items"] + rest["items"]]
    assert ids == [f"{agency}.p{i}" for i in (1, 2, 3)] and rest["next"] is None


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({**HOME, "zone": "Mars/Olympus"}, 422, "unknown_zone"),
        ({**HOME, "lat": 91}, 400, "malformed"),
        ({**HOME, "name": ""}, 400, "malformed"),
        ({"lat": 1, "lon": 1}, 400, "malformed"),
    ],
)
async def test_a_patient_that_cannot_be_registered_is_refused(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    body: dict[str, object],
    status: int,
    reason: str,
) -> None:
    url = f"/v1/agencies/{agency}/patients/{agency}.bad"
    refused = await api.put(url, json=body, headers=desk(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert (await api.get(url, headers=desk(settings, agency))).status_code == 404


async def test_another_agency_neither_reads_nor_takes_her(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    url = f"/v1/agencies/{agency}/patients/{agency}.mine"
    assert (await api.put(url, json=HOME, headers=desk(settings, agency))).status_code == 201
    other = f"app-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(other, "Other")
    peek = await api.get(url, headers=desk(settings, other))
    assert (peek.status_code, peek.json()["reason"]) == (403, "other_agency")
    taken = await api.put(
        url.replace(f"/agencies/{agency}/", f"/agencies/{other}/"),
        json={**HOME, "name": "Someone Else"},
        headers=desk(settings, other),
    )
    assert (taken.status_code, taken.json()["reason"]) == (409, "other_agency")
    assert (await api.get(url, headers=desk(settings, agency))).json()["name"] == "Ada Lovelace"
