"""The HTTP API's home fences, on the real Postgres and Redis: a patient without a fence of her
own reads the default circle; a dispatcher gives her home a radius or a polygon against the
version she read, and the visit workers' fence cache is told; a polygon that is not closed,
crosses itself, is too large, too small or far from her home is refused with its reason and
without a position; a patient of another agency, a caregiver, a family member and a request
without a token are refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import Database, PatientRow
from adapters.storage.visit_store import FenceCache, VisitStore
from kernel.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.servers

LAT, LON = 53.8, -1.55
D = 0.0003  # about 33 m north-south, 20 m east-west at her latitude


def square(lat: float = LAT, lon: float = LON, d: float = D) -> dict[str, Any]:
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


@pytest.fixture
async def agency(db: Database) -> str:
    agency_id = f"fen-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Fence Care")
    await db.upsert_patients([PatientRow(f"{agency_id}.p", agency_id, "Ada", LAT, LON)])
    return agency_id


def desk(settings: Settings, agency: str) -> dict[str, str]:
    return bearer(settings, "dispatcher", "desk", agency)


def at(agency: str, patient: str = "p") -> str:
    return f"/v1/agencies/{agency}/patients/{agency}.{patient}/fence"


async def test_a_dispatcher_gives_her_home_a_radius_then_a_polygon_against_the_version_read(
    api: httpx.AsyncClient,
    settings: Settings,
    agency: str,
    db: Database,
    redis: aioredis.Redis,
) -> None:
    default = await api.get(at(agency), headers=desk(settings, agency))
    assert default.status_code == 200
    assert default.json() == {
        "patient_id": f"{agency}.p",
        "radius_m": 200.0,
        "polygon": None,
        "own": False,
    }

    made = await api.put(
        at(agency),
        json={"radius_m": 80},
        headers={**desk(settings, agency), "If-Match": default.headers["ETag"]},
    )
    assert made.status_code == 201, made.text
    assert made.json()["radius_m"] == 80 and made.json()["own"] is True
    read = await api.get(at(agency), headers=desk(settings, agency))
    assert read.headers["ETag"] == made.headers["ETag"]
    # the default's version is stale now
    stale = await api.put(
        at(agency),
        json={"polygon": square()},
        headers={**desk(settings, agency), "If-Match": default.headers["ETag"]},
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    blind = await api.put(at(agency), json={"polygon": square()}, headers=desk(settings, agency))
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    create_only = await api.put(
        at(agency),
        json={"polygon": square()},
        headers={**desk(settings, agency), "If-None-Match": "*"},
    )
    assert create_only.status_code == 412

    cache = FenceCache(VisitStore(db, redis, settings))
    await cache.refresh()
    circle = cache.index.get(f"{agency}.p")
    assert circle is not None and circle.is_circle
    polygon = await api.put(
        at(agency),
        json={"polygon": square()},
        headers={**desk(settings, agency), "If-Match": read.headers["ETag"]},
    )
    assert polygon.status_code == 200, polygon.text
    again = await api.get(at(agency), headers=desk(settings, agency))
    assert again.json()["polygon"] == square() and again.json()["radius_m"] is None
    assert again.headers["ETag"] == polygon.headers["ETag"]
    # the fence counter moved, so the cache reloads at once (its ten-second reload is not due)
    fence = (await cache.refresh()).get(f"{agency}.p")
    assert fence is not None and not fence.is_circle


def spike() -> dict[str, Any]:
    """A bow tie: its edges cross."""
    ring = [
        [LON - D, LAT - D],
        [LON + D, LAT + D],
        [LON + D, LAT - D],
        [LON - D, LAT + D],
        [LON - D, LAT - D],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"polygon": spike()}, "fence_invalid_geometry"),
        (
            {"polygon": {"type": "Polygon", "coordinates": [square()["coordinates"][0][:-1]]}},
            "fence_bad_geojson",
        ),
        ({"polygon": {"type": "Point", "coordinates": [LON, LAT]}}, "fence_bad_geojson"),
        ({"polygon": square(d=0.05)}, "fence_too_large"),
        ({"polygon": square(d=0.00001)}, "fence_too_small"),
        ({"polygon": square(lat=LAT + 0.1)}, "fence_far_from_home"),
    ],
)
async def test_a_polygon_that_cannot_be_her_home_is_refused_with_its_reason(
    api: httpx.AsyncClient, settings: Settings, agency: str, body: dict[str, Any], reason: str
) -> None:
    refused = await api.put(at(agency), json=body, headers=desk(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (422, reason)
    assert "53.8" not in refused.text and "-1.55" not in refused.text  # no position said back
    assert (await api.get(at(agency), headers=desk(settings, agency))).json()["own"] is False


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"radius_m": 50, "polygon": square()},
        {"radius_m": 0},
        {"radius_m": 5000},
        {"radius_m": "far"},
    ],
)
async def test_a_fence_that_is_not_one_radius_or_one_polygon_is_malformed(
    api: httpx.AsyncClient, settings: Settings, agency: str, body: dict[str, Any]
) -> None:
    refused = await api.put(at(agency), json=body, headers=desk(settings, agency))
    assert (refused.status_code, refused.json()["reason"]) == (400, "malformed")


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("a caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_or_write_a_fence_is_refused(
    api: httpx.AsyncClient, settings: Settings, agency: str, who: str, status: int, reason: str
) -> None:
    headers = {
        "a caregiver": bearer(settings, "caregiver", f"{agency}.cg", agency),
        "a family member": bearer(settings, "family", "f", agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    for refused in (
        await api.get(at(agency), headers=headers),
        await api.put(at(agency), json={"radius_m": 50}, headers=headers),
    ):
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert (await api.get(at(agency), headers=desk(settings, agency))).json()["own"] is False


async def test_a_patient_of_another_agency_has_no_fence_here(
    api: httpx.AsyncClient, settings: Settings, agency: str, db: Database
) -> None:
    other = f"fen-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(other, "Other Care")
    theirs = f"/v1/agencies/{agency}/patients/{agency}.p/fence".replace(
        f"/agencies/{agency}/", f"/agencies/{other}/"
    )
    refused = await api.put(theirs, json={"radius_m": 50}, headers=desk(settings, other))
    assert (refused.status_code, refused.json()["reason"]) == (404, "unknown_patient")
    read = await api.get(theirs, headers=desk(settings, other))
    assert (read.status_code, read.json()["reason"]) == (404, "unknown_patient")
    assert (await api.get(at(agency), headers=desk(settings, agency))).json()["own"] is False
