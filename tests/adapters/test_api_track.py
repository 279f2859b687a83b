"""The HTTP API's caregiver tracks, on the real Postgres and Redis: her agency's dispatcher and
the caregiver herself read where she was over a window as GeoJSON (a LineString through her
fixes in time order, their times beside), fixes outside the window left out; another caregiver,
a family member, another agency's dispatcher and a missing token are refused with a reason; a
window that ends before it starts or is longer than a day is a 400, an unknown caregiver 404."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from adapters.storage.history import History
from adapters.storage.postgres import Database
from kernel.contracts import FixEvent
from kernel.settings import Settings
from tests.adapters.scenes import World, seed
from tests.support import bearer

pytestmark = pytest.mark.servers


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def fix(w: World, caregiver: str, ts: float, lat: float, lon: float) -> FixEvent:
    return FixEvent(
        event_id=f"{caregiver}:{ts}",
        agency_id=w.agency,
        caregiver_id=caregiver,
        lat=lat,
        lon=lon,
        acc=8.0,
        ts=ts,
        received_at=ts + 0.5,
    )


def track_of(w: World, caregiver: str) -> str:
    return f"/v1/agencies/{w.agency}/caregivers/{caregiver}/track"


@pytest.fixture
async def world(db: Database) -> World:
    return await seed(db, caregivers=2)


async def test_a_dispatcher_and_the_caregiver_read_her_track_in_a_window(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    now = float(int(time.time()))
    her = world.cg(0)
    fixes = [
        fix(world, her, now - 7200, 53.70, -1.50),  # before the window
        fix(world, her, now - 600, 53.80, -1.55),
        fix(world, her, now - 300, 53.81, -1.56),
        fix(world, her, now - 60, 53.82, -1.57),
    ]
    await History(db).record(fixes, [fix(world, world.cg(1), now - 300, 50.0, 0.0)])
    window = {"since": iso(now - 3600), "until": iso(now)}
    for who in (
        bearer(settings, "dispatcher", "desk", world.agency),
        bearer(settings, "caregiver", her, world.agency),
    ):
        read = await api.get(track_of(world, her), params=window, headers=who)
        assert read.status_code == 200, read.text
        assert read.headers["content-type"] == "application/geo+json"
        body = read.json()
        assert body["type"] == "FeatureCollection" and len(body["features"]) == 1
        feature = body["features"][0]
        assert feature["geometry"] == {
            "type": "LineString",
            "coordinates": [[-1.55, 53.80], [-1.56, 53.81], [-1.57, 53.82]],
        }
        assert feature["properties"]["times"] == [now - 600, now - 300, now - 60]
        assert feature["properties"]["caregiver_id"] == her

    one = await api.get(
        track_of(world, her),
        params={"since": iso(now - 120), "until": iso(now)},
        headers=bearer(settings, "caregiver", her, world.agency),
    )
    assert one.json()["features"][0]["geometry"] == {"type": "Point", "coordinates": [-1.57, 53.82]}
    none = await api.get(
        track_of(world, world.cg(1)),
        params={"since": iso(now - 120), "until": iso(now)},
        headers=bearer(settings, "dispatcher", "desk", world.agency),
    )
    assert none.json() == {"type": "FeatureCollection", "features": []}


async def test_without_since_it_is_the_hour_before(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    now = float(int(time.time()))
    her = world.cg(0)
    await History(db).record(
        [fix(world, her, now - 5400, 53.7, -1.5), fix(world, her, now - 30, 53.8, -1.6)]
    )
    read = await api.get(
        track_of(world, her),
        params={"until": iso(now)},
        headers=bearer(settings, "dispatcher", "d", world.agency),
    )
    assert read.json()["features"][0]["properties"]["times"] == [now - 30]


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("another caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_her_track_is_refused_with_a_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    world: World,
    who: str,
    status: int,
    reason: str,
) -> None:
    now = time.time()
    await History(db).record([fix(world, world.cg(0), now - 60, 53.8, -1.55)])
    headers = {
        "another caregiver": bearer(settings, "caregiver", world.cg(1), world.agency),
        "a family member": bearer(settings, "family", "f", world.agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    refused = await api.get(track_of(world, world.cg(0)), headers=headers)
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert "coordinates" not in refused.text


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:01Z"}, "window_too_long"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2025-12-31T00:00:00Z"}, "bad_window"),
        ({"since": "2026-01-01T00:00:00", "until": "2026-01-01T00:00:00+00:00"}, "bad_window"),
        ({"since": "not a time"}, "malformed"),
    ],
)
async def test_bad_windows_are_a_400_with_a_reason(
    api: httpx.AsyncClient, settings: Settings, world: World, params: dict[str, str], reason: str
) -> None:
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    refused = await api.get(track_of(world, world.cg(0)), params=params, headers=desk)
    assert (refused.status_code, refused.json()["reason"]) == (400, reason)


async def test_a_day_is_the_longest_window(
    api: httpx.AsyncClient, settings: Settings, world: World
) -> None:
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    params = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    assert (
        await api.get(track_of(world, world.cg(0)), params=params, headers=desk)
    ).status_code == 200


async def test_an_unknown_or_other_agencies_caregiver_is_404(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    theirs = await seed(db, caregivers=1)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    for caregiver in ("nobody-here", theirs.cg(0)):
        missing = await api.get(track_of(world, caregiver), headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_caregiver")
