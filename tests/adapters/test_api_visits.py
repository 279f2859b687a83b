"""The HTTP API's roster of visits, on the real Postgres and Redis: a dispatcher puts visits on
the roster, changes them against the version she read (the visit keeper's moves change it too),
cancels one not yet begun, lists them by day, caregiver, patient and state a page at a time;
a visit for a patient or caregiver not the agency's, or whose end is not after its start, is
refused with its reason; a visit under way keeps its patient, caregiver and start; a week's
roster comes as CSV, all of it or none (a bad row named by its line, nothing written), each row
that changes a visit against the version it was read at (a stale one, or a dispatcher's change
since, refused by its line), and the same file twice writes it once; the caregiver reads her own
visits and nobody else's."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.visit_store import VisitStore
from api.visit_import import MAX_BYTES, MAX_ROWS
from kernel.settings import Settings
from tests.support import bearer
from visits.rules import Evidence

pytestmark = pytest.mark.servers

DAY = datetime(2031, 3, 10, tzinfo=UTC).timestamp()  # a Monday, in GMT
HOUR = 3600.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@pytest.fixture
async def agency(db: Database) -> str:
    agency_id = f"vis-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Visit Care")
    await db.upsert_patients(
        [PatientRow(f"{agency_id}.p{n}", agency_id, f"Patient {n}", 53.8, -1.55) for n in (1, 2)]
    )
    await db.upsert_caregivers(
        [CaregiverRow(f"{agency_id}.cg{n}", agency_id, f"Carer {n}") for n in (1, 2)]
    )
    return agency_id


@pytest.fixture
async def other(db: Database) -> str:
    agency_id = f"vis-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Other Care")
    await db.upsert_patients([PatientRow(f"{agency_id}.p1", agency_id, "Theirs", 53.8, -1.55)])
    await db.upsert_caregivers([CaregiverRow(f"{agency_id}.cg1", agency_id, "Theirs")])
    return agency_id


def desk(settings: Settings, agency: str) -> dict[str, str]:
    return bearer(settings, "dispatcher", "desk", agency)


def at(agency: str, visit: str = "") -> str:
    base = f"/v1/agencies/{agency}/visits"
    return f"{base}/{agency}.{visit}" if visit else base


def visit(
    agency: str,
    patient: str = "p1",
    caregiver: str = "cg1",
    start: float = DAY + 9 * HOUR,
    hours: float = 1,
) -> dict[str, Any]:
    return {
        "patient_id": f"{agency}.{patient}",
        "caregiver_id": f"{agency}.{caregiver}",
        "starts_at": iso(start),
        "ends_at": iso(start + hours * HOUR),
        "service": "home_care",
        "tasks": ["meds", "lunch"],
    }


async def test_a_dispatcher_puts_a_visit_on_the_roster_and_changes_it_against_the_version_read(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    made = await api.put(at(agency, "v1"), json=visit(agency), headers=desk(settings, agency))
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["state"], shown["version"], shown["tasks"]) == ("scheduled", 0, ["meds", "lunch"])
    read = await api.get(at(agency, "v1"), headers=desk(settings, agency))
    assert read.headers["ETag"] == made.headers["ETag"] and read.json() == shown

    later = visit(agency, start=DAY + 10 * HOUR)
    blind = await api.put(at(agency, "v1"), json=later, headers=desk(settings, agency))
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    moved = await api.put(
        at(agency, "v1"),
        json=later,
        headers={**desk(settings, agency), "If-Match": read.headers["ETag"]},
    )
    assert moved.status_code == 200 and moved.json()["version"] == 1
    assert moved.json()["starts_at"] == iso(DAY + 10 * HOUR).replace("+00:00", "Z")
    stale = await api.put(
        at(agency, "v1"),
        json=visit(agency),
        headers={**desk(settings, agency), "If-Match": read.headers["ETag"]},
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    create_only = await api.put(
        at(agency, "v1"),
        json=visit(agency),
        headers={**desk(settings, agency), "If-None-Match": "*"},
    )
    assert create_only.status_code == 412
    assert (await api.get(at(agency, "v1"), headers=desk(settings, agency))).json()[
        "starts_at"
    ] == moved.json()["starts_at"]


async def test_a_keepers_move_makes_a_version_stale_and_a_visit_begun_keeps_its_who_and_when(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database, redis: aioredis.Redis
) -> None:
    made = await api.put(at(agency, "v2"), json=visit(agency), headers=desk(settings, agency))
    store = VisitStore(db, redis, settings)
    record = await store.record(f"{agency}.v2")
    assert record is not None
    arrived = replace(record, state="in_visit", check_in=Evidence(at=DAY + 9 * HOUR + 120))
    assert await store.save([arrived])
    stale = await api.put(
        at(agency, "v2"),
        json=visit(agency, hours=2),
        headers={**desk(settings, agency), "If-Match": made.headers["ETag"]},
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")

    read = await api.get(at(agency, "v2"), headers=desk(settings, agency))
    assert read.json()["state"] == "in_visit"
    assert read.json()["checked_in_at"] == iso(DAY + 9 * HOUR + 120).replace("+00:00", "Z")
    version = {**desk(settings, agency), "If-Match": read.headers["ETag"]}
    other_carer = await api.put(
        at(agency, "v2"), json=visit(agency, caregiver="cg2"), headers=version
    )
    assert (other_carer.status_code, other_carer.json()["reason"]) == (409, "visit_begun")
    longer = await api.put(
        at(agency, "v2"), json={**visit(agency, hours=2), "tasks": ["meds"]}, headers=version
    )
    assert longer.status_code == 200, longer.text
    assert (longer.json()["state"], longer.json()["tasks"]) == ("in_visit", ["meds"])
    cancel = await api.delete(
        at(agency, "v2"), headers={**desk(settings, agency), "If-Match": longer.headers["ETag"]}
    )
    assert (cancel.status_code, cancel.json()["reason"]) == (409, "visit_begun")
    # the keeper's record is as it was: her check-in kept
    kept = await store.record(f"{agency}.v2")
    assert kept is not None and kept.check_in == arrived.check_in and kept.visit.tasks == ("meds",)


async def test_a_visit_not_yet_begun_is_cancelled_against_its_version(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    made = await api.put(at(agency, "v3"), json=visit(agency), headers=desk(settings, agency))
    blind = await api.delete(at(agency, "v3"), headers=desk(settings, agency))
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    stale = await api.delete(
        at(agency, "v3"), headers={**desk(settings, agency), "If-Match": '"0000"'}
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    gone = await api.delete(
        at(agency, "v3"), headers={**desk(settings, agency), "If-Match": made.headers["ETag"]}
    )
    assert gone.status_code == 204
    read = await api.get(at(agency, "v3"), headers=desk(settings, agency))
    assert (read.status_code, read.json()["reason"]) == (404, "unknown_visit")


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"patient_id": "nobody"}, 422, "unknown_patient"),
        ({"patient_id": "{other}.p1"}, 422, "unknown_patient"),
        ({"caregiver_id": "{other}.cg1"}, 422, "unknown_caregiver"),
        ({"caregiver_id": "nobody"}, 422, "unknown_caregiver"),
        ({"ends_at": iso(DAY + 9 * HOUR)}, 422, "bad_times"),
        ({"ends_at": iso(DAY + 8 * HOUR)}, 422, "bad_times"),
        ({"ends_at": iso(DAY + 34 * HOUR)}, 422, "too_long"),
        ({"starts_at": "2031-03-10T09:00:00"}, 400, "malformed"),
        ({"tasks": [""]}, 400, "malformed"),
    ],
)
async def test_a_visit_that_cannot_be_is_refused_with_its_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    other: str,
    change: dict[str, str],
    status: int,
    reason: str,
) -> None:
    body = {
        **visit(agency),
        **{k: v.format(other=other) if isinstance(v, str) else v for k, v in change.items()},
    }
    refused = await api.put(at(agency, "bad"), json=body, headers=desk(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert (await api.get(at(agency, "bad"), headers=desk(settings, agency))).status_code == 404


async def test_a_visit_id_of_another_agency_is_never_moved_across(
    api: httpx.AsyncClient, settings: Settings, agency: str, other: str
) -> None:
    theirs = {**visit(other), "patient_id": f"{other}.p1", "caregiver_id": f"{other}.cg1"}
    assert (
        await api.put(
            f"/v1/agencies/{other}/visits/shared-v", json=theirs, headers=desk(settings, other)
        )
    ).status_code == 201
    taken = await api.put(
        f"/v1/agencies/{agency}/visits/shared-v", json=visit(agency), headers=desk(settings, agency)
    )
    assert (taken.status_code, taken.json()["reason"]) == (409, "other_agency")
    read = await api.get(f"/v1/agencies/{agency}/visits/shared-v", headers=desk(settings, agency))
    assert read.status_code == 404


async def test_the_roster_is_listed_by_day_caregiver_patient_and_state_a_page_at_a_time(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    plan = {
        "a": visit(agency, "p1", "cg1", DAY + 9 * HOUR),
        "b": visit(agency, "p2", "cg1", DAY + 11 * HOUR),
        "c": visit(agency, "p1", "cg2", DAY + 23.5 * HOUR),  # the 10th in UTC; so in London (GMT)
        "d": visit(agency, "p2", "cg2", DAY + 33 * HOUR),  # the 11th
    }
    for name, body in plan.items():
        assert (
            await api.put(at(agency, name), json=body, headers=desk(settings, agency))
        ).status_code == 201

    async def ids(**params: Any) -> list[str]:
        seen, after = [], ""
        while True:
            page = await api.get(
                at(agency),
                params={**params, "after": after, "limit": 2},
                headers=desk(settings, agency),
            )
            assert page.status_code == 200, page.text
            seen += [v["id"].removeprefix(f"{agency}.") for v in page.json()["items"]]
            if page.json()["next"] is None:
                return seen
            after = page.json()["next"]

    assert await ids() == ["a", "b", "c", "d"]
    assert await ids(day="2031-03-10") == ["a", "b", "c"]
    assert await ids(day="2031-03-10", zone="Asia/Tokyo") == ["a", "b"]  # c is on the 11th there
    assert await ids(day="2031-03-11") == ["d"]
    assert await ids(caregiver_id=f"{agency}.cg2") == ["c", "d"]
    assert await ids(patient_id=f"{agency}.p2") == ["b", "d"]
    assert await ids(
        state="scheduled", caregiver_id=f"{agency}.cg1", patient_id=f"{agency}.p1"
    ) == ["a"]
    assert await ids(state="left") == []
    unknown = await api.get(
        at(agency),
        params={"day": "2031-03-10", "zone": "Mars/Olympus"},
        headers=desk(settings, agency),
    )
    assert (unknown.status_code, unknown.json()["reason"]) == (422, "unknown_zone")

    # she reads her own visits, and only hers
    me = bearer(settings, "caregiver", f"{agency}.cg2", agency)
    mine = await api.get(at(agency), params={"caregiver_id": f"{agency}.cg2"}, headers=me)
    assert [v["id"] for v in mine.json()["items"]] == [f"{agency}.c", f"{agency}.d"]
    everyones = await api.get(at(agency), headers=me)
    assert (everyones.status_code, everyones.json()["reason"]) == (403, "forbidden")
    assert (await api.get(at(agency, "c"), headers=me)).status_code == 200
    theirs = await api.get(at(agency, "a"), headers=me)
    assert (theirs.status_code, theirs.json()["reason"]) == (403, "forbidden")
    asked = await api.get(at(agency), params={"caregiver_id": f"{agency}.cg1"}, headers=me)
    assert (asked.status_code, asked.json()["reason"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("a caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_write_the_roster_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str, who: str, status: int, reason: str
) -> None:
    headers = {
        "a caregiver": bearer(settings, "caregiver", f"{agency}.cg1", agency),
        "a family member": bearer(settings, "family", "f", agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    for refused in (
        await api.put(at(agency, "w"), json=visit(agency), headers=headers),
        await api.post(
            f"/v1/agencies/{agency}/visits:import",
            content=b"visit_id\n",
            headers={**headers, "Content-Type": "text/csv"},
        ),
    ):
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    read = await api.get(at(agency), headers=headers)
    assert (read.status_code, read.json()["reason"]) == (status, reason)
    assert (await api.get(at(agency, "w"), headers=desk(settings, agency))).status_code == 404


# ---------------------------------------------------------------- CSV import

HEADER = "visit_id,patient_id,caregiver_id,starts_at,ends_at,service,tasks"


def week(agency: str, *extra: str) -> bytes:
    lines = [HEADER]
    for day in range(7):
        start = DAY + day * 24 * HOUR + 9 * HOUR
        for n, cg in ((1, "cg1"), (2, "cg2")):
            lines.append(
                f"{agency}.w{day}-{n},{agency}.p{n},{agency}.{cg},"
                f"{iso(start)},{iso(start + HOUR)},home_care,meds;lunch"
            )
    return "\n".join([*lines, *extra]).encode() + b"\n"


async def _import(
    api: httpx.AsyncClient, settings: Settings, agency: str, body: bytes
) -> httpx.Response:
    return await api.post(
        f"/v1/agencies/{agency}/visits:import",
        content=body,
        headers={**desk(settings, agency), "Content-Type": "text/csv"},
    )


async def _count(db: Database, agency: str) -> int:
    return int(await db.pool.fetchval("SELECT count(*) FROM visits WHERE agency_id = $1", agency))


async def test_a_weeks_roster_is_imported_once_however_often_it_is_sent(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    first = await _import(api, settings, agency, week(agency))
    assert first.status_code == 200, first.text
    assert first.json() == {"created": 14, "changed": 0, "unchanged": 0}
    assert await _count(db, agency) == 14
    again = await _import(api, settings, agency, week(agency))
    assert again.json() == {"created": 0, "changed": 0, "unchanged": 14}
    assert await _count(db, agency) == 14
    one = (await api.get(at(agency, "w3-2"), headers=desk(settings, agency))).json()
    assert (one["caregiver_id"], one["tasks"], one["version"]) == (
        f"{agency}.cg2",
        ["meds", "lunch"],
        0,
    )

    changed = with_versions(week(agency), {f"{agency}.w0-1": 0}).replace(b"meds;lunch,0", b"meds,0")
    third = await _import(api, settings, agency, changed)
    assert third.json() == {"created": 0, "changed": 1, "unchanged": 13}
    assert (await api.get(at(agency, "w0-1"), headers=desk(settings, agency))).json()["tasks"] == [
        "meds"
    ]
    assert (await _import(api, settings, agency, changed)).json()["unchanged"] == 14


def with_versions(body: bytes, versions: dict[str, int]) -> bytes:
    """The file with a ``version`` column: each visit's given, the others' empty."""
    header, *rows = body.decode().splitlines()
    out = [f"{header},version"]
    out += [f"{r},{versions.get(r.split(',', 1)[0], '')}" for r in rows]
    return "\n".join(out).encode() + b"\n"


async def _version(api: httpx.AsyncClient, settings: Settings, agency: str, visit: str) -> int:
    read = await api.get(at(agency, visit), headers=desk(settings, agency))
    return int(read.json()["version"])


async def _tasks(db: Database, agency: str) -> dict[str, list[str]]:
    rows = await db.pool.fetch("SELECT id, tasks FROM visits WHERE agency_id = $1", agency)
    return {r["id"]: list(r["tasks"]) for r in rows}


async def test_a_row_that_changes_a_visit_is_written_against_the_version_read(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    assert (await _import(api, settings, agency, week(agency))).status_code == 200
    read = await _version(api, settings, agency, "w2-1")
    lunch_only = week(agency).replace(b"meds;lunch", b"lunch")  # every visit changes

    blind = await _import(api, settings, agency, lunch_only)
    assert (blind.status_code, blind.json()["reason"]) == (422, "bad_rows")
    assert len(blind.json()["detail"]) == 14
    assert blind.json()["detail"][0] == {
        "line": 2,
        "visit_id": f"{agency}.w0-1",
        "reason": "version_required",
    }

    versions = {f"{agency}.w{d}-{n}": read for d in range(7) for n in (1, 2)}
    stale = dict(versions) | {f"{agency}.w3-2": read + 7}  # line 9
    refused = await _import(api, settings, agency, with_versions(lunch_only, stale))
    assert (refused.status_code, refused.json()["reason"]) == (422, "bad_rows")
    assert refused.json()["detail"] == [
        {"line": 9, "visit_id": f"{agency}.w3-2", "reason": "changed"}
    ]
    assert set(map(tuple, (await _tasks(db, agency)).values())) == {("meds", "lunch")}

    written = await _import(api, settings, agency, with_versions(lunch_only, versions))
    assert written.json() == {"created": 0, "changed": 14, "unchanged": 0}
    assert set(map(tuple, (await _tasks(db, agency)).values())) == {("lunch",)}
    assert await _version(api, settings, agency, "w2-1") == read + 1
    again = await _import(api, settings, agency, with_versions(lunch_only, versions))
    assert again.json() == {"created": 0, "changed": 0, "unchanged": 14}


async def test_a_new_visit_needs_no_version_and_one_cancelled_since_it_was_read_is_not_revived(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    s, e = iso(DAY + 30 * HOUR), iso(DAY + 31 * HOUR)
    new = f"{HEADER},version\n{agency}.n1,{agency}.p1,{agency}.cg1,{s},{e},home_care,meds,\n"
    made = await _import(api, settings, agency, new.encode())
    assert made.json() == {"created": 1, "changed": 0, "unchanged": 0}

    read = await api.get(at(agency, "n1"), headers=desk(settings, agency))
    cancelled = await api.delete(
        at(agency, "n1"), headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert cancelled.status_code == 204
    revived = await _import(api, settings, agency, new.replace(",meds,", ",meds,0").encode())
    assert revived.json()["detail"] == [
        {"line": 2, "visit_id": f"{agency}.n1", "reason": "changed"}
    ]
    assert await _count(db, agency) == 0
    bad = await _import(api, settings, agency, new.replace(",meds,", ",meds,v1").encode())
    assert bad.json()["detail"] == [
        {"line": 2, "visit_id": f"{agency}.n1", "reason": "bad_version"}
    ]


async def test_a_visit_cancelled_and_made_again_is_not_overwritten_by_a_file_of_the_first(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    """A file made from a visit at version 0; the visit is cancelled and made again with its
    id (another plan): its versions go on from the cancelled one's, so the file's row is
    refused by its line (``changed``) and the visit made since is kept."""
    s, e = iso(DAY + 30 * HOUR), iso(DAY + 31 * HOUR)
    row = f"{agency}.n1,{agency}.p1,{agency}.cg1,{s},{e},home_care"
    first = f"{HEADER},version\n{row},meds,\n"
    assert (await _import(api, settings, agency, first.encode())).json()["created"] == 1
    read = await api.get(at(agency, "n1"), headers=desk(settings, agency))
    assert read.json()["version"] == 0
    made_from_it = f"{HEADER},version\n{row},meds;lunch,0\n"  # a change, at the version read

    cancelled = await api.delete(
        at(agency, "n1"), headers={**desk(settings, agency), "If-Match": read.headers["ETag"]}
    )
    assert cancelled.status_code == 204
    again = f"{HEADER},version\n{row},bath,\n"
    assert (await _import(api, settings, agency, again.encode())).json()["created"] == 1
    assert await _version(api, settings, agency, "n1") == 1

    stale = await _import(api, settings, agency, made_from_it.encode())
    assert (stale.status_code, stale.json()["detail"]) == (
        422,
        [{"line": 2, "visit_id": f"{agency}.n1", "reason": "changed"}],
    )
    assert await _tasks(db, agency) == {f"{agency}.n1": ["bath"]}

    taken_off = await api.get(at(agency, "n1"), headers=desk(settings, agency))
    await api.delete(
        at(agency, "n1"), headers={**desk(settings, agency), "If-Match": taken_off.headers["ETag"]}
    )
    assert (await _import(api, settings, agency, again.encode())).json()["created"] == 1
    assert await _version(api, settings, agency, "n1") == 2  # after each one cancelled


async def test_a_visit_changed_between_the_read_and_the_import_is_not_overwritten(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    """The file is made from the roster as read; meanwhile another dispatcher moves one of its
    visits with a PUT of her own: the import names that row and writes nothing, hers kept."""
    assert (await _import(api, settings, agency, week(agency))).status_code == 200
    listed = await api.get(at(agency), params={"limit": 100}, headers=desk(settings, agency))
    versions = {v["id"]: v["version"] for v in listed.json()["items"]}
    assert len(versions) == 14

    one = await api.get(at(agency, "w5-2"), headers=desk(settings, agency))
    theirs = visit(agency, "p2", "cg1", start=DAY + 5 * 24 * HOUR + 9 * HOUR)
    put = await api.put(
        at(agency, "w5-2"),
        json=theirs,
        headers={**desk(settings, agency), "If-Match": one.headers["ETag"]},
    )
    assert put.status_code == 200, put.text

    mine = with_versions(week(agency).replace(b"meds;lunch", b"meds"), versions)
    refused = await _import(api, settings, agency, mine)
    assert refused.json()["detail"] == [
        {"line": 13, "visit_id": f"{agency}.w5-2", "reason": "changed"}
    ]
    stored = await _tasks(db, agency)
    assert all(tasks == ["meds", "lunch"] for tasks in stored.values())
    kept = (await api.get(at(agency, "w5-2"), headers=desk(settings, agency))).json()
    assert kept["caregiver_id"] == f"{agency}.cg1" and kept["version"] == 1


async def test_a_file_with_bad_rows_imports_nothing_and_names_each_by_its_line(
    api: httpx.AsyncClient, settings: Settings, agency: str, other: str, db: Database
) -> None:
    s, e = iso(DAY + 30 * HOUR), iso(DAY + 31 * HOUR)
    bad = week(
        agency,
        f"{agency}.x1,{agency}.p9,{agency}.cg1,{s},{e},home_care,",  # line 16: unknown patient
        f"{agency}.x2,{agency}.p1,{other}.cg1,{s},{e},home_care,",  # line 17: their caregiver
        f"{agency}.x3,{agency}.p1,{agency}.cg1,{e},{s},home_care,",  # line 18: ends first
        f"{agency}.x4,{agency}.p1,{agency}.cg1,tomorrow,{e},home_care,",  # line 19
        f"{agency}.w0-1,{agency}.p1,{agency}.cg1,{s},{e},home_care,",  # line 20: twice
        f"{agency}.x5,{agency}.p1",  # line 21
    )
    refused = await _import(api, settings, agency, bad)
    assert (refused.status_code, refused.json()["reason"]) == (422, "bad_rows")
    assert refused.json()["detail"] == [
        {"line": 16, "visit_id": f"{agency}.x1", "reason": "unknown_patient"},
        {"line": 17, "visit_id": f"{agency}.x2", "reason": "unknown_caregiver"},
        {"line": 18, "visit_id": f"{agency}.x3", "reason": "bad_times"},
        {"line": 19, "visit_id": f"{agency}.x4", "reason": "bad_starts_at"},
        {"line": 20, "visit_id": f"{agency}.w0-1", "reason": "duplicate_visit"},
        {"line": 21, "visit_id": f"{agency}.x5", "reason": "wrong_number_of_columns"},
    ]
    assert "tomorrow" not in refused.text and "home_care" not in refused.text
    assert await _count(db, agency) == 0

    # the rows judged against the roster are named even when every row reads well
    good_but_unknown = week(agency, f"{agency}.x1,{agency}.p9,{agency}.cg1,{s},{e},home_care,")
    refused = await _import(api, settings, agency, good_but_unknown)
    assert refused.json()["detail"] == [
        {"line": 16, "visit_id": f"{agency}.x1", "reason": "unknown_patient"}
    ]
    assert await _count(db, agency) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"visit_id,patient_id\n", "text/csv", 422, "bad_header"),
        (b"", "text/csv", 422, "bad_header"),
        (b"\xff\xfe", "text/csv", 422, "not_utf8"),
        (b"{}", "application/json", 415, "unsupported_media_type"),
        (b"x" * (MAX_BYTES + 1), "text/csv", 413, "too_large"),
    ],
)
async def test_a_file_that_cannot_be_read_is_refused_whole(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    db: Database,
    body: bytes,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    refused = await api.post(
        f"/v1/agencies/{agency}/visits:import",
        content=body,
        headers={**desk(settings, agency), "Content-Type": content_type},
    )
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert await _count(db, agency) == 0


async def test_a_file_of_too_many_rows_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    row = f"{agency}.v,{agency}.p1,{agency}.cg1,{iso(DAY)},{iso(DAY + HOUR)},,"
    body = "\n".join(
        [HEADER, *[row.replace(".v,", f".v{n},") for n in range(MAX_ROWS + 1)]]
    ).encode()
    assert len(body) < MAX_BYTES
    refused = await _import(api, settings, agency, body)
    assert (refused.status_code, refused.json()["reason"]) == (413, "too_many_rows")
    assert await _count(db, agency) == 0
