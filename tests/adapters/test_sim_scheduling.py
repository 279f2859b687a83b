"""The demo city schedules its day of visits through the real HTTP API (in process, on the real
Postgres and Redis): its homes' fences where neighbours are near, its visits from a few minutes
before it started, all as one CSV import; started again the same day it schedules nothing
twice; an API that never answers is given up on with the reason."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from kernel.settings import Settings
from simulators import scheduling
from simulators.population import AGENCY_ID, CityConfig
from simulators.simulate import Simulation
from simulators.visit_plan import fences_needed

pytestmark = pytest.mark.servers

CONFIG = CityConfig(
    caregivers=4, homes=40, dispensers=False, vitals_monitors=0.0, residents=False, seed=5
)


@pytest.fixture(scope="module")
async def transport(settings: Settings) -> AsyncIterator[httpx.AsyncBaseTransport]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield httpx.ASGITransport(app=app)


async def _roster(settings: Settings, transport: httpx.AsyncBaseTransport) -> list[dict[str, str]]:
    token = scheduling.dispatcher_token(settings, AGENCY_ID, time.time())
    headers = {"Authorization": f"Bearer {token}"}
    out: list[dict[str, str]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        after = ""
        while True:
            page = await client.get(
                f"/v1/agencies/{AGENCY_ID}/visits",
                params={"limit": 100, "after": after},
                headers=headers,
            )
            assert page.status_code == 200, page.text
            out += page.json()["items"]
            after = page.json()["next"]
            if after is None:
                return out


async def test_the_city_schedules_its_day_through_the_api_once(
    settings: Settings, transport: httpx.AsyncBaseTransport, db: object
) -> None:
    async with Simulation(settings, CONFIG) as sim:
        visits, fences = sim.visits, fences_needed(sim.city.homes)
        assert visits and fences
        first = await scheduling.schedule(settings, AGENCY_ID, visits, fences, transport=transport)
        again = await scheduling.schedule(
            settings, AGENCY_ID, visits[3:], fences, transport=transport
        )
    assert first == {"created": len(visits), "changed": 0, "unchanged": 0}
    assert again == {"created": 0, "changed": 0, "unchanged": len(visits) - 3}

    rostered = await _roster(settings, transport)
    assert sorted(v["id"] for v in rostered) == sorted(v.visit_id for v in visits)
    planned = {v.visit_id: v for v in visits}
    for shown in rostered:
        v = planned[shown["id"]]
        assert (shown["patient_id"], shown["caregiver_id"]) == (v.patient_id, v.caregiver_id)
        assert shown["state"] in ("scheduled", "en_route", "missed")

    token = scheduling.dispatcher_token(settings, AGENCY_ID, time.time())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        patient, radius = next(iter(sorted(fences.items())))
        fence = await client.get(
            f"/v1/agencies/{AGENCY_ID}/patients/{patient}/fence",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert fence.json()["own"] is True and fence.json()["radius_m"] == radius


async def test_an_api_that_never_answers_is_given_up_with_the_reason(settings: Settings) -> None:
    closed = settings.model_copy(update={"api_host": "127.0.0.1", "api_port": 9})
    with pytest.raises(scheduling.SchedulingFailed, match="did not answer within 1 s"):
        await scheduling.schedule(closed, AGENCY_ID, [], {}, wait_s=1.0)
