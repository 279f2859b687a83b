"""The HTTP API's certificates and shifts of a caregiver, on the real Postgres and Redis: a
dispatcher gives, renews (against the version she read) and takes away certificates, adds shifts
(their ids answered), lists them in a window of time and deletes them; what eligibility reads
(``Roster.profiles``) sees them; a shift whose end is not after its start is refused; the
caregiver reads her own, and neither another caregiver, a family member, another agency's
dispatcher nor a request without a token reads them."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from adapters.storage.postgres import CaregiverRow, Database
from adapters.storage.roster import Roster
from kernel.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.servers

NOW = time.time()


@pytest.fixture
async def agency(db: Database) -> str:
    agency_id = f"ros-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Roster Care")
    await db.upsert_caregivers(
        [
            CaregiverRow(f"{agency_id}.cg", agency_id, "Cara"),
            CaregiverRow(f"{agency_id}.other", agency_id, "Olu"),
        ]
    )
    return agency_id


def desk(settings: Settings, agency: str) -> dict[str, str]:
    return bearer(settings, "admin", "desk", agency)


def at(agency: str, what: str, caregiver: str = "cg") -> str:
    return f"/v1/agencies/{agency}/caregivers/{agency}.{caregiver}/{what}"


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def test_a_dispatcher_gives_renews_and_takes_away_a_certificate(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    url = at(agency, "certificates/first_aid")
    expiry = iso(NOW + 30 * 86400)
    made = await api.put(url, json={"expires_at": expiry}, headers=desk(settings, agency))
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "first_aid" and made.json()["caregiver_id"] == f"{agency}.cg"
    read = await api.get(url, headers=desk(settings, agency))
    assert read.status_code == 200 and read.headers["ETag"] == made.headers["ETag"]
    profile = (await Roster(db).profiles([f"{agency}.cg"], NOW))[f"{agency}.cg"]
    assert profile.certificates["first_aid"] == pytest.approx(NOW + 30 * 86400, abs=1)

    renewed = {"expires_at": iso(NOW + 365 * 86400)}
    blind = await api.put(url, json=renewed, headers=desk(settings, agency))
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    done = await api.put(
        url, json=renewed, headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert done.status_code == 200 and done.headers["ETag"] != read.headers["ETag"]
    stale = await api.put(
        url,
        json={"expires_at": expiry},
        headers={**desk(settings, agency), "If-Match": read.headers["ETag"]},
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")

    await api.put(
        at(agency, "certificates/manual_handling"),
        json={"expires_at": expiry},
        headers=desk(settings, agency),
    )
    listed = (
        await api.get(
            at(agency, "certificates"), params={"limit": 1}, headers=desk(settings, agency)
        )
    ).json()
    assert [c["kind"] for c in listed["items"]] == ["first_aid"] and listed["next"] == "first_aid"
    rest = await api.get(
        at(agency, "certificates"), params={"after": listed["next"]}, headers=desk(settings, agency)
    )
    assert [c["kind"] for c in rest.json()["items"]] == ["manual_handling"]

    stale_delete = await api.delete(
        url, headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert stale_delete.status_code == 412
    gone = await api.delete(
        url, headers={**desk(settings, agency), "If-Match": done.headers["ETag"]}
    )
    assert gone.status_code == 204
    assert (await api.get(url, headers=desk(settings, agency))).json()[
        "reason"
    ] == "unknown_certificate"
    again = await api.delete(url, headers=desk(settings, agency))
    assert (again.status_code, again.json()["reason"]) == (404, "unknown_certificate")


async def test_a_certificate_of_no_caregiver_of_the_agency_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    refused = await api.put(
        at(agency, "certificates/first_aid", caregiver="nobody"),
        json={"expires_at": iso(NOW)},
        headers=desk(settings, agency),
    )
    assert (refused.status_code, refused.json()["reason"]) == (404, "unknown_caregiver")
    naive = await api.put(
        at(agency, "certificates/first_aid"),
        json={"expires_at": "2027-01-01T00:00:00"},
        headers=desk(settings, agency),
    )
    assert (naive.status_code, naive.json()["reason"]) == (400, "malformed")


async def test_a_dispatcher_adds_lists_and_deletes_shifts(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    ids = []
    for day in (1, 2, 10):
        made = await api.post(
            at(agency, "shifts"),
            json={
                "starts_at": iso(NOW + day * 86400),
                "ends_at": iso(NOW + day * 86400 + 8 * 3600),
            },
            headers=desk(settings, agency),
        )
        assert made.status_code == 201, made.text
        assert made.headers["Location"].endswith(f"/shifts/{made.json()['id']}")
        ids.append(made.json()["id"])
    window = {"from": iso(NOW), "to": iso(NOW + 7 * 86400)}
    first = (
        await api.get(
            at(agency, "shifts"), params={**window, "limit": 1}, headers=desk(settings, agency)
        )
    ).json()
    assert [s["id"] for s in first["items"]] == ids[:1] and first["next"] == ids[0]
    second = (
        await api.get(
            at(agency, "shifts"),
            params={**window, "after": first["next"]},
            headers=desk(settings, agency),
        )
    ).json()
    assert [s["id"] for s in second["items"]] == ids[1:2] and second[
        "next"
    ] is None  # day 10 is outside
    for odd in ("x", "¹", "١٢"):  # digits not ASCII too
        bad = await api.get(
            at(agency, "shifts"), params={**window, "after": odd}, headers=desk(settings, agency)
        )
        assert (bad.status_code, bad.json()["reason"]) == (400, "malformed"), bad.text
    profile = (await Roster(db).profiles([f"{agency}.cg"], NOW))[f"{agency}.cg"]
    assert len(profile.shifts) == 3

    gone = await api.delete(at(agency, f"shifts/{ids[0]}"), headers=desk(settings, agency))
    assert gone.status_code == 204
    left = (
        await api.get(at(agency, "shifts"), params=window, headers=desk(settings, agency))
    ).json()
    assert [s["id"] for s in left["items"]] == ids[1:2]
    again = await api.delete(at(agency, f"shifts/{ids[0]}"), headers=desk(settings, agency))
    assert (again.status_code, again.json()["reason"]) == (404, "unknown_shift")
    # a shift is deleted only as the caregiver's it is
    wrong = await api.delete(
        at(agency, f"shifts/{ids[1]}", caregiver="other"), headers=desk(settings, agency)
    )
    assert (wrong.status_code, wrong.json()["reason"]) == (404, "unknown_shift")


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [(3600, 3600, "bad_times"), (7200, 3600, "bad_times"), (0, 25 * 3600, "too_long")],
)
async def test_a_shift_that_does_not_end_after_it_starts_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str, start: float, end: float, reason: str
) -> None:
    refused = await api.post(
        at(agency, "shifts"),
        json={"starts_at": iso(NOW + start), "ends_at": iso(NOW + end)},
        headers=desk(settings, agency),
    )
    assert (refused.status_code, refused.json()["reason"]) == (422, reason)
    listed = await api.get(
        at(agency, "shifts"), params={"from": iso(NOW - 86400)}, headers=desk(settings, agency)
    )
    assert listed.json()["items"] == []


async def test_she_reads_her_own_shifts_and_certificates_and_writes_neither(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    await api.put(
        at(agency, "certificates/first_aid"),
        json={"expires_at": iso(NOW)},
        headers=desk(settings, agency),
    )
    await api.post(
        at(agency, "shifts"),
        json={"starts_at": iso(NOW + 60), "ends_at": iso(NOW + 3600)},
        headers=desk(settings, agency),
    )
    me = bearer(settings, "caregiver", f"{agency}.cg", agency)
    shifts = await api.get(at(agency, "shifts"), headers=me)
    assert shifts.status_code == 200 and len(shifts.json()["items"]) == 1
    certificates = await api.get(at(agency, "certificates"), headers=me)
    assert [c["kind"] for c in certificates.json()["items"]] == ["first_aid"]
    write = await api.post(
        at(agency, "shifts"),
        json={"starts_at": iso(NOW + 60), "ends_at": iso(NOW + 3600)},
        headers=me,
    )
    assert (write.status_code, write.json()["reason"]) == (403, "forbidden")


@pytest.mark.parametrize("what", ["shifts", "certificates", "certificates/first_aid"])
@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("another caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_her_roster_is_refused(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    what: str,
    who: str,
    status: int,
    reason: str,
) -> None:
    headers = {
        "another caregiver": bearer(settings, "caregiver", f"{agency}.other", agency),
        "a family member": bearer(settings, "family", "f", agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    refused = await api.get(at(agency, what), headers=headers)
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
