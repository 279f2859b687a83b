"""The web pages as a person sees them, in Chromium, against ``careknot up --simulate``.

One system for the module (the simulated Leeds city publishing all along), one Chromium
(Debian's, ``/usr/bin/chromium``, driven by Playwright) for its tests. Every request the pages
make beyond the gateway and the HTTP API (the map's tile server) is refused, as on a machine
with no internet: the map must still show its drawn grid. Each step waits with Playwright's
``expect``, which retries until its timeout; screenshots are kept under
``test-artifacts/browser/``.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import jwt
import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
from matplotlib import image
from playwright.async_api import (
    Browser,
    Page,
    Route,
    WebSocketRoute,
    async_playwright,
    expect,
)

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from adapters.storage.visit_store import VisitStore
from geofence.geodesy import LocalFrame
from kernel import tokens
from kernel.contracts import Role
from kernel.settings import Settings
from simulators.population import AGENCY_ID as CITY
from simulators.residents import ZONE
from tests.journey.harness import own_worker_ready, running_system
from tests.support import Phone, is_type, token, wait_for
from visits.rules import Visit

pytestmark = [pytest.mark.servers, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never a browser build of Playwright's
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
WAIT_MS = 60_000  # news on a loaded machine (the whole suite on two cores); no cost when quick

RUN = secrets.token_hex(3)
# Agencies of the run's own (MQTT topics are not namespaced): nobody of theirs but who the
# tests place, so an emergency with no caregiver located escalates at once.
DESK = f"browser-{RUN}"
CAREGIVER, PATIENT, DEVICE = f"br-cg-{RUN}", f"br-pat-{RUN}", f"br-fd-{RUN}"
HOME = (53.7760, -1.6010)  # Farsley, west of the simulated city's centre
NEAR = (53.7768, -1.6002)  # ~100 m from her home
FAMILY = f"browser-fam-{RUN}"
VISITOR, RELATIVE, RELATIVE_FD = f"bf-cg-{RUN}", f"bf-pat-{RUN}", f"bf-fd-{RUN}"
VISIT = f"bf-visit-{RUN}"
OFFERS = f"browser-offers-{RUN}"  # a caregiver located, so its fall is offered to her
ASKED, ASKED_FOR, ASKED_FD = f"bo-cg-{RUN}", f"bo-pat-{RUN}", f"bo-fd-{RUN}"
LATE = f"browser-late-{RUN}"  # a visit begun 700 s before the tests, nobody there: late
LATECOMER, WAITING_FOR, LATE_VISIT = f"bl-cg-{RUN}", f"bl-pat-{RUN}", f"bl-visit-{RUN}"
LATE_HOME = (53.8300, -1.6200)  # Horsforth
RELATIVE_HOME = (53.8210, -1.5760)  # Headingley
VISIT_STATES = {"scheduled", "en_route", "arrived", "in_visit", "left", "missed"}
ROSTER_WAIT_S = 20.0  # the city rosters its day through the API as it starts
STEP_M = 20.0  # per fix, one second apart
DWELL_IN_S = 2.0


@pytest.fixture(scope="module")
def system(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("up-browser")
    with running_system(
        migrated, workdir, simulate=True, visit_dwell_in_s=DWELL_IN_S, visit_dwell_out_s=3.0
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def ready(system: Settings) -> AsyncIterator[Settings]:
    """The workers ready; the tests' agencies, people, devices and the family's visit."""
    await own_worker_ready(system)
    r = aioredis.Redis.from_url(system.redis_url)
    async with Database(system) as db:
        await db.upsert_agency(DESK, "Browser Care")
        await db.upsert_agency(FAMILY, "Browser Family Care")
        await db.upsert_agency(OFFERS, "Browser Offers Care")
        await db.upsert_agency(LATE, "Browser Late Care")
        await db.upsert_caregivers(
            [
                CaregiverRow(CAREGIVER, DESK, "Carla Browser"),
                CaregiverRow(VISITOR, FAMILY, "Vera Visitor"),
                CaregiverRow(ASKED, OFFERS, "Olga Offered"),
                CaregiverRow(LATECOMER, LATE, "Lou Latecomer"),
            ]
        )
        await db.upsert_patients(
            [
                PatientRow(PATIENT, DESK, "Pat Browser", *HOME),
                PatientRow(RELATIVE, FAMILY, "Rita Relative", *RELATIVE_HOME),
                PatientRow(ASKED_FOR, OFFERS, "Agnes Asked-For", *HOME),
                PatientRow(WAITING_FOR, LATE, "Lena Waiting", *LATE_HOME),
            ]
        )
        await db.upsert_devices(
            [
                DeviceRow(DEVICE, DESK, PATIENT, "fall_detector"),
                DeviceRow(RELATIVE_FD, FAMILY, RELATIVE, "fall_detector"),
                DeviceRow(ASKED_FD, OFFERS, ASKED_FOR, "fall_detector"),
            ]
        )
        store = VisitStore(db, r, system)
        start = time.time() + 600  # she comes early for it: it is her next visit
        visit = Visit(VISIT, FAMILY, RELATIVE, VISITOR, start, start + 1800, *RELATIVE_HOME, ())
        begun = time.time() - 700  # past the 600 s a visit is late after, nobody there
        late = Visit(LATE_VISIT, LATE, WAITING_FOR, LATECOMER, begun, begun + 3600, *LATE_HOME, ())
        await store.add_visits([visit, late])
        await store.set_fence(RELATIVE, radius_m=100.0)
    await r.aclose()
    yield system


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        await chromium.close()


GRID_COVERS_MAP = """() => {
    const map = document.getElementById("map").getBoundingClientRect();
    const seen = [...document.querySelectorAll(".ck-grid-tile")].filter((tile) => {
        const r = tile.getBoundingClientRect();
        const shown = getComputedStyle(tile).visibility !== "hidden" && r.width > 0;
        return shown && r.right > map.left && r.left < map.right
            && r.bottom > map.top && r.top < map.bottom;
    });
    const area = seen.reduce((sum, tile) => {
        const r = tile.getBoundingClientRect();
        const w = Math.min(r.right, map.right) - Math.max(r.left, map.left);
        const h = Math.min(r.bottom, map.bottom) - Math.max(r.top, map.top);
        return sum + w * h;
    }, 0);
    return area >= 0.99 * map.width * map.height;
}"""
"""Whether the grid's tiles, shown, cover the whole map (each tile's part inside it, summed)."""


async def _offline(route: Route) -> None:
    await route.abort("internetdisconnected")


async def _page(browser: Browser, settings: Settings, path: str, **viewport: int) -> Page:
    """A fresh page of the gateway's at ``path`` (its token in the fragment); nothing beyond
    the gateway and the API answers it."""
    context = await browser.new_context(
        viewport={"width": viewport.get("width", 1280), "height": viewport.get("height", 860)},
        timezone_id=ZONE,  # the people of the simulated Leeds read its clocks
    )
    gateway = f"http://{settings.gateway_host}:{settings.gateway_port}"
    ours = f"{re.escape(gateway)}/|{re.escape(_api_url(settings))}/|ws://"
    await context.route(re.compile(rf"^(?!{ours})"), _offline)
    page = await context.new_page()
    await page.goto(f"{gateway}{path}")
    return page


def _api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _api(settings: Settings, desk: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {desk}"}
    return httpx.AsyncClient(base_url=_api_url(settings), headers=headers, trust_env=False)


async def _all(client: httpx.AsyncClient, path: str, **query: str) -> list[dict[str, Any]]:
    """Every item of a listing of the API's, page after page."""
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        answer = await client.get(path, params={**query, "limit": "500", "after": after})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        if not body["next"]:
            return items
        after = body["next"]


async def _days_visits(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The city's visits of today, as the console asks for them (its homes' zone)."""
    today = datetime.now(ZoneInfo(ZONE)).date().isoformat()
    return await _all(client, f"/v1/agencies/{CITY}/visits", day=today, zone=ZONE)


async def _two_visits(client: httpx.AsyncClient, homes: list[dict[str, Any]]) -> None:
    """Two visits of today by one of the city's caregivers, where the city rostered none."""
    caregivers = await _all(client, f"/v1/agencies/{CITY}/caregivers")
    now = datetime.now(ZoneInfo(ZONE))
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = min(now + timedelta(minutes=10), midnight - timedelta(minutes=40))
    for n, home in enumerate(homes[:2]):
        begins = start + timedelta(minutes=20 * n)
        visit = {
            "patient_id": home["id"],
            "caregiver_id": caregivers[0]["id"],
            "starts_at": begins.isoformat(),
            "ends_at": (begins + timedelta(minutes=15)).isoformat(),
        }
        answer = await client.put(
            f"/v1/agencies/{CITY}/visits/br-visit-{RUN}-{n}",
            json=visit,
            headers={"If-None-Match": "*"},
        )
        assert answer.status_code == 201, answer.text


async def _shot(page: Page, name: str, selector: str = "body") -> bytes:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    png = await page.locator(selector).screenshot(path=str(path))
    print(f"screenshot: {path}")
    return png


def _colours(png: bytes) -> int:
    """How many different colours the picture has."""
    pixels = np.asarray(image.imread(io.BytesIO(png), format="png"))
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


async def _publish(settings: Settings, topic: str, payload: object) -> None:
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        await client.publish(topic, orjson.dumps(payload), qos=1)


def _fall() -> dict[str, object]:
    return {"type": "fall", "ts": time.time(), "seq": secrets.randbelow(10**6), "data": {}}


async def test_caregivers_move_on_a_map_that_shows_its_grid(
    ready: Settings, browser: Browser
) -> None:
    page = await _page(browser, ready, f"/#token={token(ready, 'dispatcher', 'desk', CITY)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    markers = page.locator(".ck-cg[data-caregiver-id]")
    await expect(markers.first).to_be_visible(timeout=WAIT_MS)
    await page.wait_for_function(GRID_COVERS_MAP, timeout=WAIT_MS)  # no tile server: the grid
    await _shot(page, "console-city", "#map")
    where = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.ck-cg[data-caregiver-id]')]"
        ".map((m) => [m.dataset.caregiverId, m.dataset.latlng]))"
    )
    moved = await page.wait_for_function(
        """(before) => [...document.querySelectorAll('.ck-cg[data-caregiver-id]')]
            .find((m) => m.dataset.caregiverId in before
                && m.dataset.latlng !== before[m.dataset.caregiverId])?.dataset.caregiverId""",
        arg=where,
        timeout=WAIT_MS,
    )
    who = await moved.json_value()
    assert isinstance(who, str) and who.startswith(f"{CITY}-cg")
    await _shot(page, "console-city-moved", "#map")
    await page.context.close()


async def test_the_console_shows_every_home_and_the_days_visits_with_their_state(
    ready: Settings, browser: Browser
) -> None:
    desk = token(ready, "dispatcher", "desk", CITY)
    async with _api(ready, desk) as client:
        homes = await _all(client, f"/v1/agencies/{CITY}/patients")
        assert homes, "the city has homes"

        async def rostered() -> list[dict[str, Any]] | None:
            return await _days_visits(client) or None

        try:
            visits = await wait_for(rostered, ROSTER_WAIT_S, "the city's day of visits")
        except TimeoutError:  # the city rostered nothing (yet): two of the test's own
            await _two_visits(client, homes)
            visits = await _days_visits(client)
    page = await _page(browser, ready, f"/#token={desk}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)

    # every home of the city on the map, from the start: none needed an incident to show
    await expect(page.locator(".ck-home[data-patient-id]")).to_have_count(
        len(homes), timeout=WAIT_MS
    )
    first = homes[0]
    home = page.locator(f'.ck-home[data-patient-id="{first["id"]}"]')
    await expect(home).to_have_attribute("data-patient-name", first["name"])
    await home.dispatch_event("click")  # its name on a click (or on hover)
    await expect(page.locator(".leaflet-tooltip", has_text=first["name"])).to_be_visible()

    # the day's visits in the Visits list, each with its state
    rows = page.locator("#visits li.visit[data-visit-id]")
    await expect(rows.first).to_be_visible(timeout=WAIT_MS)
    shown = await rows.evaluate_all(
        "(rows) => rows.map((r) => [r.dataset.visitId, r.dataset.state])"
    )
    assert shown and {state for _, state in shown} <= VISIT_STATES
    assert {visit for visit, _ in shown} <= {v["id"] for v in visits} | {
        f"br-visit-{RUN}-{n}" for n in range(2)
    }
    await expect(rows.first.locator(".state")).not_to_be_empty()
    await expect(page.locator("#visits-summary")).to_contain_text(" visit")
    await expect(page.locator("#api-status")).to_be_hidden()
    await _shot(page, "console-homes-visits")
    await page.context.close()


async def test_an_escalated_incident_pulses_is_acknowledged_assigned_and_resolved(
    ready: Settings, browser: Browser
) -> None:
    page = await _page(browser, ready, f"/#token={token(ready, 'dispatcher', 'desk', DESK)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    await _publish(ready, f"ck/{DESK}/dev/{DEVICE}/evt", _fall())

    # Nobody of the agency is located: the fall escalates to the dispatchers at once.
    incident = page.locator(".ck-incident.escalated")
    await expect(incident).to_be_visible(timeout=WAIT_MS)
    await expect(incident.locator(".ring")).to_have_css("animation-name", "ck-pulse")
    await expect(page.locator(".ck-home[data-patient-id]")).to_have_count(1)
    # the map under a pulsing marker is still drawn: grid tiles cover it, not a blank
    await expect(page.locator(".ck-grid-tile").first).to_be_visible()
    await page.wait_for_function(GRID_COVERS_MAP, timeout=WAIT_MS)
    assert _colours(await _shot(page, "console-escalated", "#map")) > 20

    # Escalated, it is a critical alarm for the dispatchers: acknowledged from the page.
    alarm = page.locator("#alarms li.alarm.critical", has_text="incident escalated")
    await alarm.get_by_role("button", name=re.compile("^Acknowledge")).click()
    await expect(alarm.locator(".hand")).to_have_text("Acknowledged", timeout=WAIT_MS)
    await expect(alarm.locator(".status")).to_contain_text("acknowledged by you")

    # Her phone's first fix puts her on the map; the dispatcher sends her.
    tst = int(time.time())
    fix = {"_type": "location", "lat": NEAR[0], "lon": NEAR[1], "tst": tst, "acc": 8}
    await _publish(ready, f"ck/{DESK}/cg/{CAREGIVER}/loc", fix)
    await expect(page.locator(f'.ck-cg[data-caregiver-id="{CAREGIVER}"]')).to_be_visible(
        timeout=WAIT_MS
    )
    await page.locator(".ck-incident").click()
    detail = page.locator("#incident-detail")
    await expect(detail).to_be_visible()
    await expect(detail.locator("#detail-timeline")).to_contain_text("escalated")
    await detail.locator("#assign-caregiver").select_option(CAREGIVER)
    await detail.get_by_role("button", name="Assign").click()
    await expect(detail.locator("#detail-outcome")).to_have_text("Assigned", timeout=WAIT_MS)
    await expect(detail.locator("#detail-state")).to_have_text("assigned", timeout=WAIT_MS)
    await expect(detail.locator("#detail-who")).to_contain_text("Carla Browser")
    await expect(page.locator(".ck-incident.assigned")).to_be_visible()
    await expect(page.locator("#incidents .incident.assigned")).to_contain_text("Carla Browser")
    await _shot(page, "console-assigned")

    # She is there and all is well: resolved, its ring leaves the map, its home stays.
    await detail.get_by_role("button", name="Resolve").click()
    await expect(detail.locator("#detail-outcome")).to_have_text("Resolved", timeout=WAIT_MS)
    await expect(detail.locator("#detail-state")).to_have_text("resolved")
    await expect(page.locator(".ck-incident")).to_have_count(0)
    await expect(page.locator(".ck-home")).to_have_count(1)
    await expect(detail.locator("#detail-timeline")).to_contain_text("your resolve: done")
    await page.context.close()


async def test_without_its_map_library_or_the_api_the_console_still_works(
    ready: Settings, browser: Browser
) -> None:
    context = await browser.new_context()
    await context.route("**/vendor/leaflet/**", _offline)  # as on a server with no npm install
    await context.route(f"{_api_url(ready)}/**", _offline)  # and no route to the API
    page = await context.new_page()
    gateway = f"http://{ready.gateway_host}:{ready.gateway_port}"
    await page.goto(f"{gateway}/#token={token(ready, 'dispatcher', 'desk', CITY)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    await expect(page.locator("#map")).to_contain_text("No map")
    await expect(page.locator("#count-caregivers")).not_to_have_text("0", timeout=WAIT_MS)
    await expect(page.locator("#api-status")).to_contain_text("No API", timeout=WAIT_MS)
    await expect(page.locator("#log li", has_text="cannot be reached")).to_have_count(1)
    await context.close()


class Drive:
    """Her phone: a fix a second (its clock started a minute back, so a quick drive is not
    ahead of now), north of her patient's home by ``metres``."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.tst = int(time.time()) - 60

    async def at(self, metres: float) -> None:
        self.tst += 1
        lon, lat = LocalFrame(*RELATIVE_HOME).to_lonlat(0.0, metres)
        fix = {"_type": "location", "lat": lat, "lon": lon, "tst": self.tst, "acc": 5}
        await self.client.publish(f"ck/{FAMILY}/cg/{VISITOR}/loc", orjson.dumps(fix), qos=1)


async def test_a_family_sees_her_relatives_visit_arrive_and_help_sent(
    ready: Settings, browser: Browser
) -> None:
    family = token(ready, "family", f"bf-fam-{RUN}", FAMILY, [RELATIVE])
    page = await _page(browser, ready, f"/family#token={family}", width=390, height=844)
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    await expect(page.locator("#patient-name")).to_have_text(RELATIVE)
    visit = page.locator(f'#visits li[data-visit-id="{VISIT}"]')
    async with aiomqtt.Client(ready.mqtt_host, ready.mqtt_port) as client:
        drive = Drive(client)
        await drive.at(800.0)
        await expect(visit).to_have_attribute("data-state", "en_route", timeout=WAIT_MS)
        await expect(visit).to_contain_text("Vera Visitor is on the way, about")
        metres = 780.0
        while metres > 0:  # she drives in
            await drive.at(metres)
            metres -= STEP_M
        for _ in range(int(DWELL_IN_S) + 3):
            await drive.at(5.0)  # parked at the door
    await expect(visit).to_have_attribute("data-state", "arrived", timeout=WAIT_MS)
    await expect(visit.locator(".status")).to_have_text("Arrived")
    await expect(page.locator("#now")).to_contain_text("Vera Visitor arrived at")
    await _shot(page, "family-arrived")

    # A fall while she is there: the family sees help sent, then the outcome.
    desk = await Phone.open(ready, token(ready, "dispatcher", f"bf-desk-{RUN}", FAMILY))
    await _publish(ready, f"ck/{FAMILY}/dev/{RELATIVE_FD}/evt", _fall())
    row = page.locator("#incidents li.incident")
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    await expect(row).to_contain_text("A fall")
    incident_id = await row.get_attribute("data-incident-id")
    await desk.send({"type": "resolve", "incident_id": incident_id})
    await desk.expect(is_type("command_result", incident_id=incident_id, outcome="done"))
    await expect(row).to_have_attribute("data-state", "resolved", timeout=WAIT_MS)
    await expect(row.locator(".status")).to_have_text("Resolved")
    await _shot(page, "family-resolved")
    await desk.close()
    # readable on a phone: nothing wider than the screen
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390
    await page.context.close()


async def test_the_console_shows_whom_an_incident_was_offered_to_and_her_answer(
    ready: Settings, browser: Browser
) -> None:
    page = await _page(browser, ready, f"/#token={token(ready, 'dispatcher', 'desk', OFFERS)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    phone = await Phone.open(ready, token(ready, "caregiver", ASKED, OFFERS))
    tst = int(time.time())
    fix = {"_type": "location", "lat": NEAR[0], "lon": NEAR[1], "tst": tst, "acc": 8}
    await _publish(ready, f"ck/{OFFERS}/cg/{ASKED}/loc", fix)
    await expect(page.locator(f'.ck-cg[data-caregiver-id="{ASKED}"]')).to_be_visible(
        timeout=WAIT_MS
    )  # located: the dispatch worker can offer her the fall
    await _publish(ready, f"ck/{OFFERS}/dev/{ASKED_FD}/evt", _fall())
    offer = await phone.expect(is_type("offer"))

    # the map draws a line from her to the incident while the offer is out
    line = page.locator(f'path.ck-offer-line[data-offer-id="{offer["offer_id"]}"]')
    await expect(line).to_have_attribute("data-caregiver-id", ASKED, timeout=WAIT_MS)
    await page.locator(".ck-incident").click()
    detail = page.locator("#incident-detail")
    await expect(detail.locator("#detail-title")).to_contain_text("Agnes Asked-For")
    asked = detail.locator(f'#detail-offers li.offer[data-offer-id="{offer["offer_id"]}"]')
    await expect(asked).to_have_attribute("data-state", "offered", timeout=WAIT_MS)
    await expect(asked.locator(".who")).to_have_text("Olga Offered")
    await expect(asked.locator(".when")).to_contain_text("answer by")
    await _shot(page, "console-offered")

    # she declines: the panel says so and her line leaves the map
    await phone.send({"type": "decline", "offer_id": offer["offer_id"], "reason": "driving"})
    await expect(asked).to_have_attribute("data-state", "declined", timeout=WAIT_MS)
    await expect(asked.locator(".state")).to_have_text("declined")
    await expect(line).to_have_count(0)
    await expect(detail.locator("#detail-timeline")).to_contain_text("declined")
    await _shot(page, "console-declined")
    await phone.close()
    await page.context.close()


class MockSocket:
    """The console's WebSocket answered by the test, not the gateway: a hello to its auth, a pong
    to its ping, and the frames the test sends it. A stand-in, where the real gateway sends a
    ``resync`` only when Redis has lost the recipient's stream, which the module's one running
    city cannot be put through without every other test of it losing its pages' state too."""

    def __init__(self) -> None:
        self.route: WebSocketRoute | None = None
        self.seq = 0

    def take(self, route: WebSocketRoute) -> None:
        self.route = route
        route.on_message(self._heard)

    def _heard(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        assert self.route is not None
        if frame.get("type") == "auth":
            hello = {"type": "hello", "role": "dispatcher", "subject": "desk", "seq_now": 0}
            self.route.send(orjson.dumps({**hello, "epoch": 1}).decode())
        elif frame.get("type") == "ping":
            self.route.send('{"type": "pong"}')

    def send(self, frame: dict[str, Any], epoch: int = 1) -> None:
        assert self.route is not None
        self.seq += 1
        self.route.send(orjson.dumps({**frame, "seq": self.seq, "epoch": epoch}).decode())


async def test_the_console_lets_offers_go_at_a_resync_and_when_their_incident_is_resolved(
    ready: Settings, browser: Browser
) -> None:
    """Its standing offers told again after a resync, and none of a resolved incident: the
    console holds the offers of open incidents alone (the frames are the test's own)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id=ZONE)
    gateway = f"http://{ready.gateway_host}:{ready.gateway_port}"
    ours = f"{re.escape(gateway)}/|{re.escape(_api_url(ready))}/|ws://"
    await context.route(re.compile(rf"^(?!{ours})"), _offline)
    socket = MockSocket()
    await context.route_web_socket(re.compile(r"/ws$"), socket.take)
    page = await context.new_page()
    await page.goto(f"{gateway}/#token={token(ready, 'dispatcher', 'desk', OFFERS)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    await expect(page.locator("#agency")).to_contain_text("desk", timeout=WAIT_MS)

    now = time.time()
    lat, lon = NEAR
    mine = {"caregiver_id": "mock-cg", "h3": "", "status": "available"}
    socket.send({"type": "location", **mine, "lat": lat, "lon": lon, "ts": now})
    fall = {"type": "incident", "incident_id": "mock-inc", "patient_id": ASKED_FOR, "kind": "fall"}
    socket.send({**fall, "state": "offered", "at": now, "lat": HOME[0], "lon": HOME[1]})
    offer = {"type": "offer_status", "incident_id": "mock-inc", "caregiver_id": "mock-cg"}
    asked = {**offer, "offer_id": "mock-offer", "state": "offered", "expires_at": now + 60}
    socket.send({**asked, "eta_s": 120.0, "at": now})
    line = page.locator("path.ck-offer-line")
    await expect(line).to_have_count(1, timeout=WAIT_MS)
    await page.locator('#incidents li[data-incident-id="mock-inc"] button.head').click()
    listed = page.locator("#detail-offers li.offer")
    await expect(listed).to_have_count(1)

    # the server lost its stream: what the page held of offers goes, and comes back as told
    socket.send({"type": "resync", "seq_now": 0}, epoch=2)
    await expect(line).to_have_count(0)
    await expect(listed).to_have_count(0)
    socket.seq = 0
    again = {**asked, "offer_id": "mock-offer-2", "eta_s": 90.0, "at": now + 1}
    socket.send(again, epoch=2)
    await expect(line).to_have_count(1)
    await expect(listed).to_have_attribute("data-offer-id", "mock-offer-2")

    # resolved: its offers are let go, a late frame of one too
    socket.send({**fall, "state": "resolved", "at": now + 2}, epoch=2)
    await expect(line).to_have_count(0)
    await expect(listed).to_have_count(0)
    await expect(page.locator("#no-offers")).to_have_text(
        "Resolved: its offers are in the timeline."
    )
    socket.send({**again, "state": "cancelled", "at": now + 3}, epoch=2)
    await page.wait_for_timeout(500)  # the page's loop draws four times a second
    await expect(listed).to_have_count(0)
    await context.close()


async def test_visit_alerts_and_visits_name_the_patient(ready: Settings, browser: Browser) -> None:
    page = await _page(browser, ready, f"/#token={token(ready, 'dispatcher', 'desk', LATE)}")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    alert = page.locator(f'#visits li.visit-alert[data-alert-id="late:{LATE_VISIT}"]')
    await expect(alert).to_have_attribute("data-state", "raised", timeout=WAIT_MS)
    await expect(alert).to_contain_text("late at Lena Waiting")
    await expect(alert).not_to_contain_text(WAITING_FOR)
    visit = page.locator(f'#visits li.visit[data-visit-id="{LATE_VISIT}"]')
    await expect(visit.locator(".what")).to_have_text("Lena Waiting · Lou Latecomer")
    await _shot(page, "console-late-visit")
    await page.context.close()


def _short_token(settings: Settings, role: Role, sub: str, agency: str, **kw: Any) -> str:
    """A token of 40 s: a page renews it when half its life is left, 20 s on."""
    now = time.time()
    return tokens.mint(tokens.keyring_of(settings), role, sub, agency, 40.0, now, **kw)


async def _renewed(page: Page, old: str) -> float:
    """The fresh token's expiry, once the page renewed its token and the gateway took the fresh
    one on the open connection (``auth_ok``)."""
    was = tokens.Claims.model_validate(jwt.decode(old, options={"verify_signature": False})).exp
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-token-exp", re.compile(r"\d"), timeout=WAIT_MS)
    exp = float(await connection.get_attribute("data-token-exp") or 0)
    assert exp > was + 60
    await expect(connection).to_have_attribute("data-auth-exp", str(exp), timeout=WAIT_MS)
    await expect(connection).to_have_text("Live")
    return exp


async def test_the_pages_renew_their_token_before_it_expires(
    ready: Settings, browser: Browser
) -> None:
    """Both pages at once, each on a short token: each renews it and goes on under the fresh one."""
    desk = _short_token(ready, "dispatcher", "desk", CITY)
    family = _short_token(ready, "family", f"bf-fam-{RUN}", FAMILY, patients=[RELATIVE])
    console = await _page(browser, ready, f"/#token={desk}")
    page = await _page(browser, ready, f"/family#token={family}", width=390, height=844)
    await asyncio.gather(_renewed(console, desk), _renewed(page, family))
    await expect(console.locator("#log li", has_text="token renewed")).to_have_count(1)
    await console.context.close()
    await page.context.close()


async def test_a_page_renews_once_at_its_sessions_end_and_says_so(
    ready: Settings, browser: Browser
) -> None:
    """A token of 24 s whose session ends in 35 s: the page renews it once, half its life on;
    the fresh token expires at the session's end, so the page says when that is and renews no
    more (nor when its tab is shown again), where it renewed again and again until the end."""
    now = time.time()
    ends = now + 35
    claims = tokens.Claims(
        role="dispatcher",
        sub="desk",
        agency=CITY,
        iat=now,
        exp=now + 24,
        auth_time=ends - ready.token_session_max_s,
    )
    desk = tokens.issue(claims, tokens.keyring_of(ready), now)
    page = await _page(browser, ready, f"/#token={desk}")
    asked: list[float] = []
    page.on(
        "request",
        lambda request: asked.append(time.time()) if "/v1/tokens/renew" in request.url else None,
    )
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute(
        "data-session-ends", re.compile(r"\d"), timeout=WAIT_MS
    )
    assert float(await connection.get_attribute("data-session-ends") or 0) == pytest.approx(ends)
    assert float(await connection.get_attribute("data-token-exp") or 0) == pytest.approx(ends)
    await expect(page.locator("#log li", has_text="session ends at")).to_have_count(1)
    await page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await page.wait_for_timeout(max(0.0, ends + 3 - time.time()) * 1000)  # past its end
    await page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await page.wait_for_timeout(1000)
    assert len(asked) == 1, asked
    assert asked[0] - now >= 10  # half the token's life on, not at once
    await page.context.close()


async def test_a_family_sees_todays_doses_and_nothing_without_a_schedule(
    ready: Settings, browser: Browser
) -> None:
    schedule = {
        "doses": [
            {"name": "metformin 500 mg", "at": "08:00"},
            {"name": "digoxin 125 mcg", "at": "20:00", "critical": True},
        ]
    }
    async with _api(ready, token(ready, "dispatcher", "desk", FAMILY)) as client:
        answer = await client.put(
            f"/v1/agencies/{FAMILY}/patients/{RELATIVE}/medication",
            json=schedule,
            headers={"If-None-Match": "*"},
        )
        assert answer.status_code in (200, 201), answer.text
    family = token(ready, "family", f"bf-fam-{RUN}", FAMILY, [RELATIVE])
    page = await _page(browser, ready, f"/family#token={family}", width=390, height=844)
    card = page.locator("#doses-card")
    await expect(card).to_have_attribute("data-schedule", "some", timeout=WAIT_MS)
    doses = card.locator("li.dose")
    await expect(doses).to_have_count(2)
    await expect(doses.nth(0).locator(".who")).to_have_text("metformin 500 mg, due 08:00")
    await expect(doses.nth(1).locator(".who")).to_have_text(
        "digoxin 125 mcg (important), due 20:00"
    )
    await expect(doses.nth(0).locator(".status")).not_to_be_empty()
    await expect(card.locator("#no-doses")).to_be_hidden()
    await _shot(page, "family-doses")
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390
    await page.context.close()

    # her relative with no schedule: the page says nothing of medication
    nothing = token(ready, "family", f"bo-fam-{RUN}", OFFERS, [ASKED_FOR])
    page = await _page(browser, ready, f"/family#token={nothing}", width=390, height=844)
    card = page.locator("#doses-card")
    await expect(card).to_have_attribute("data-schedule", "none", timeout=WAIT_MS)
    await expect(card).to_be_hidden()
    await page.context.close()
