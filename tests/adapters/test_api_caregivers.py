"""The HTTP API's caregivers, on the real Postgres and Redis: an agency's admin creates, reads,
lists a page at a time and replaces them only against the version she read; two admins cannot
overwrite each other's change; a dispatcher reads them and cannot enrol; another agency's token,
a caregiver reading someone else's record, a family member, a revoked or a missing token are
refused with a reason; bad input is a 400 that says where, never a 500; an id of another agency
is never moved across.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import Database
from adapters.storage.revocations import Revocations
from kernel.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.servers


@pytest.fixture
async def agency(db: Database) -> str:
    agency_id = f"api-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "API Care")
    return agency_id


def cid(agency: str, name: str) -> str:
    """A caregiver id of the agency's own (ids are unique across agencies)."""
    return f"{agency}.{name}"


def at(agency: str, caregiver: str = "", raw: bool = False) -> str:
    """The caregivers' path, or one caregiver's (``raw``: the id as given, else the agency's)."""
    if not caregiver:
        return f"/v1/agencies/{agency}/caregivers"
    return f"/v1/agencies/{agency}/caregivers/{caregiver if raw else cid(agency, caregiver)}"


async def test_an_admin_creates_reads_and_replaces_against_the_version_she_read(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    desk = bearer(settings, "admin", "desk", agency)
    body = {"name": "Cara Hoist", "skills": ["hoist"]}
    made = await api.put(at(agency, "cg-1"), json=body, headers=desk)
    assert made.status_code == 201
    assert made.json() == {"id": cid(agency, "cg-1"), "agency_id": agency, **body}
    read = await api.get(at(agency, "cg-1"), headers=desk)
    assert read.status_code == 200 and read.headers["ETag"] == made.headers["ETag"]

    changed = {"name": "Cara Hoist", "skills": ["hoist", "insulin"]}
    replaced = await api.put(
        at(agency, "cg-1"), json=changed, headers={**desk, "If-Match": read.headers["ETag"]}
    )
    assert replaced.status_code == 200 and replaced.json()["skills"] == ["hoist", "insulin"]
    assert replaced.headers["ETag"] != read.headers["ETag"]

    # a second admin still holding the first version cannot overwrite the change
    late = await api.put(
        at(agency, "cg-1"),
        json={"name": "Cara", "skills": []},
        headers={
            **bearer(settings, "admin", "desk-2", agency),
            "If-Match": read.headers["ETag"],
        },
    )
    assert (late.status_code, late.json()["reason"]) == (412, "changed")
    blind = await api.put(at(agency, "cg-1"), json=body, headers=desk)  # no version at all
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    again = await api.put(at(agency, "cg-1"), json=body, headers={**desk, "If-None-Match": "*"})
    assert again.status_code == 412  # create only, and it exists
    assert (await api.get(at(agency, "cg-1"), headers=desk)).json()["skills"] == [
        "hoist",
        "insulin",
    ]


async def test_the_list_comes_a_page_at_a_time_in_id_order(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    desk = bearer(settings, "admin", "desk", agency)
    for i in (3, 1, 5, 2, 4):
        made = await api.put(at(agency, f"cg-{i}"), json={"name": f"Carer {i}"}, headers=desk)
        assert made.status_code == 201
    seen: list[str] = []
    after = ""
    while True:
        page = (await api.get(at(agency), params={"limit": 2, "after": after}, headers=desk)).json()
        seen += [c["id"] for c in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == [cid(agency, f"cg-{i}") for i in range(1, 6)]


@pytest.mark.parametrize(
    ("who", "path", "status", "reason"),
    [
        ("another agency's dispatcher", "own", 403, "other_agency"),
        ("a caregiver, of someone else's record", "cg-a", 403, "forbidden"),
        ("a family member", "cg-a", 403, "forbidden"),
        ("a family member", "list", 403, "forbidden"),
        ("nobody", "cg-a", 401, "unauthorised"),
        ("a forged token", "cg-a", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_is_refused_with_a_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    who: str,
    path: str,
    status: int,
    reason: str,
) -> None:
    desk = bearer(settings, "admin", "desk", agency)
    assert (await api.put(at(agency, "cg-a"), json={"name": "A"}, headers=desk)).status_code == 201
    headers: dict[str, str] = {
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "a caregiver, of someone else's record": bearer(
            settings, "caregiver", cid(agency, "cg-b"), agency
        ),
        "a family member": bearer(settings, "family", "f", agency),
        "nobody": {},
        "a forged token": {"Authorization": "Bearer abc.def.ghi"},
    }[who]
    url = at(agency) if path in ("list", "own") else at(agency, path)
    refused = await api.get(url, headers=headers)
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    if status == 401:
        assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_a_dispatcher_reads_the_caregivers_and_cannot_enrol_them(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    admin = bearer(settings, "admin", "boss", agency)
    assert (await api.put(at(agency, "cg-d"), json={"name": "D"}, headers=admin)).status_code == 201
    desk = bearer(settings, "dispatcher", "desk", agency)
    assert (await api.get(at(agency, "cg-d"), headers=desk)).json()["name"] == "D"
    for refused in (
        await api.put(at(agency, "cg-e"), json={"name": "E"}, headers=desk),
        await api.post(f"{at(agency, 'cg-d')}/credentials", headers=desk),
    ):
        assert (refused.status_code, refused.json()["reason"]) == (403, "forbidden")
    assert (await api.get(at(agency, "cg-e"), headers=admin)).status_code == 404


async def test_a_caregiver_reads_her_own_record(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    desk = bearer(settings, "admin", "desk", agency)
    await api.put(at(agency, "cg-me"), json={"name": "Me"}, headers=desk)
    mine = await api.get(
        at(agency, "cg-me"), headers=bearer(settings, "caregiver", cid(agency, "cg-me"), agency)
    )
    assert (mine.status_code, mine.json()["name"]) == (200, "Me")
    write = await api.put(
        at(agency, "cg-me"),
        json={"name": "Boss"},
        headers=bearer(settings, "caregiver", cid(agency, "cg-me"), agency),
    )
    assert (write.status_code, write.json()["reason"]) == (403, "forbidden")


async def test_an_id_of_another_agency_is_never_moved_across(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    other = f"api-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(other, "Other Care")
    theirs = bearer(settings, "admin", "d-other", other)
    shared = at(other, "cg-x")
    assert (await api.put(shared, json={"name": "X"}, headers=theirs)).status_code == 201
    taken = await api.put(
        shared.replace(f"/agencies/{other}/", f"/agencies/{agency}/"),
        json={"name": "Mine now"},
        headers=bearer(settings, "admin", "desk", agency),
    )
    assert (taken.status_code, taken.json()["reason"]) == (409, "other_agency")
    assert (await api.get(shared, headers=theirs)).json()["name"] == "X"


async def test_a_revoked_dispatcher_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str
) -> None:
    desk = bearer(settings, "dispatcher", "desk-gone", agency)
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await Revocations(redis, settings.keys).revoke("dispatcher", "desk-gone", time.time())
    finally:
        await redis.aclose()
    refused = await api.get(at(agency), headers=desk)
    assert (refused.status_code, refused.json()["detail"]) == (401, "token revoked")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("cg-1", {"name": ""}),
        ("cg-1", {"name": "x" * 201}),
        ("cg-1", {"skills": ["hoist"]}),
        ("cg-1", {"name": "A", "skills": "hoist"}),
        ("cg-1", {"name": "A", "skills": [""]}),
        ("cg-1", {"name": "A", "skills": ["s"] * 33}),
        ("bad id!", {"name": "A"}),
        ("-starts-with-a-dash", {"name": "A"}),
        ("x" * 129, {"name": "A"}),
        ("cg-1", []),
        ("cg-1", "not an object"),
    ],
)
async def test_bad_input_is_a_400_that_says_where(
    api: httpx.AsyncClient, settings: Settings, agency: str, path: str, body: Any
) -> None:
    desk = bearer(settings, "admin", "desk", agency)
    refused = await api.put(at(agency, path, raw=path != "cg-1"), json=body, headers=desk)
    assert refused.status_code == 400
    said = refused.json()
    assert said["reason"] == "malformed" and said["detail"][0]["at"]
    assert "x" * 129 not in refused.text  # what was sent is not echoed back


async def test_the_openapi_document_describes_the_caregivers(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    paths = doc["paths"]
    assert {"get", "put"} <= set(paths["/v1/agencies/{agency_id}/caregivers/{caregiver_id}"])
    assert "get" in paths["/v1/agencies/{agency_id}/caregivers"]
    assert "412" in paths["/v1/agencies/{agency_id}/caregivers/{caregiver_id}"]["put"]["responses"]
    assert (await api.get("/docs")).status_code == 200
