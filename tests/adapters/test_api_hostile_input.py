"""No input makes the HTTP API answer 5xx, on the real Postgres and Redis: every route, read
from its OpenAPI document (a route added later is tried without a word here, and
``test_every_route_is_tried`` fails on one that is not), is sent hostile input under hypothesis
on the module's own agency, holding one of each record a route's path names (a caregiver, a
patient, a device, a phone, a certificate, a shift, a visit, a fence, a medication schedule,
made through the API as its admin and dispatcher make them; an incident assigned, an alarm, a
command on it and a visit alert, as the workers make them), so that each route's path points
at a real record and its handler gets the rest of the input; what a route deletes is made
again after it. Each route is sent by those who may use it: its one role where the attack
matrix names one (``Case.only``), else the agency's admin and dispatcher and, where the API
lets them, the caregiver and the patient's family. The input: path segments that are long,
unicode, percent-encoded slashes or NULs, dots; query values of the wrong type, huge, at the
ends of the calendar; If-Match (the current ETag too, so writes get past their precondition),
If-None-Match and Idempotency-Key junk; bodies drawn from the route's own schema, and the same
with a field anywhere in them made wrong (the wrong type, 100,000 characters, huge or negative
numbers, NaN and Infinity as JSON text, nested deep, an unknown field), an empty object, JSON
that is not an object, bytes that are not JSON or not UTF-8, and the wrong content type. Each
answer is 2xx whose status and JSON body are as the route's document says (its response
schema), 3xx, or a 4xx whose body is exactly ``{"reason": str, "detail": ...}``; an exception
escaping the app fails the test (``raise_app_exceptions``).

Short and deterministic: a fixed number of examples a route, derandomized.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.storage.alarms import AlarmStore
from adapters.storage.handovers import HandoverStore
from adapters.storage.incidents import IncidentStore
from adapters.storage.postgres import Database
from adapters.storage.visit_store import VisitStore
from api.app import create_app
from kernel.contracts import Role
from kernel.settings import Settings
from kernel.tokens import keyring_of, mint
from tests.adapters.api_fuzzing import (
    AGENCY,
    BODIES,
    CG,
    CURRENT,
    DEVICE,
    HOME,
    OWN,
    PATIENT,
    PLACES,
    ROUTES,
    TAG,
    Hostile,
    answer_is_not_as_documented,
    refusal_is_a_reason,
    requests_of,
    send,
)
from tests.adapters.api_routes import CASES as MATRIX
from tests.adapters.api_routes import Case, operations
from visits.rules import AlertChange

pytestmark = pytest.mark.servers

EXAMPLES = settings(
    max_examples=70,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)


def callers(route: tuple[str, str]) -> list[str] | None:
    """The one role of the agency that may use the route, where the attack matrix names one
    (``Case.only``: an admin's enrolments, a dispatcher's commands); None: its admin, its
    dispatcher, and whoever else the API lets (:meth:`Records.callers`)."""
    case = MATRIX.get(route)
    return None if case is None or case.only is None else [case.only]


# ---------------------------------------------------------------- the app and its records


@pytest.fixture(scope="module")
async def hostile_api(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The API in process, its lifespan entered; an exception escaping it raised here."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, dict[str, str]]:
    """Each caller's bearer, minted a minute short of the tokens' lifetime, so that renewing it
    gains time (one of the full lifetime, just minted, is not renewed)."""
    ring, now, ttl_s = keyring_of(settings), time.time(), settings.token_ttl_s - 60.0

    def bearer(role: Role, sub: str, patients: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(ring, role, sub, AGENCY, ttl_s, now, patients)}"}

    return {
        "admin": bearer("admin", "boss"),
        "dispatcher": bearer("dispatcher", "desk"),
        "caregiver": bearer("caregiver", CG),
        "family": bearer("family", "fam", patients=[PATIENT]),
    }


@dataclass(slots=True)
class Records:
    """The agency's records, made as its admin and dispatcher make them (through the API),
    and as the workers do what no route makes (an incident, an alarm, a visit alert)."""

    api: httpx.AsyncClient
    tokens: dict[str, dict[str, str]]
    devices: int = 0
    callers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """Who may use each route: its one role (:func:`callers`), or its admin and dispatcher
    and, where the API lets them, the caregiver and the family member."""

    async def who_may(self) -> None:
        """Each route's callers: the caregiver and the family member are tried once on it with
        the attack matrix's good request, and are its callers unless refused ``forbidden``."""
        for route in ROUTES:
            only = callers(route)
            if only is not None:
                self.callers[route] = only
                continue
            self.callers[route] = ["admin", "dispatcher"]
            case = MATRIX.get(route, Case())
            method, template = route
            for role in ("caregiver", "family"):
                answer = await self.api.request(
                    method,
                    template.format(**OWN),
                    params=case.params,
                    json=case.json,
                    content=case.content,
                    headers={**self.tokens[role], **case.headers},
                )
                if answer.status_code != 403 or answer.json()["reason"] != "forbidden":
                    self.callers[route].append(role)

    async def current(self, one: Hostile) -> None:
        """The request's ``If-Match`` the current ETag of what it names, if it asks for it."""
        if one.headers.get("if-match") != CURRENT:
            return
        del one.headers["if-match"]
        if one.method != "GET" and any(m == "GET" and p == one.template for m, p in ROUTES):
            read = await self.api.get(one.path, headers=self.tokens["admin"])
            if "etag" in read.headers:
                one.headers["if-match"] = read.headers["etag"].encode()

    async def put(self, path: str, body: object, who: str = "admin") -> httpx.Response:
        """Create the record at ``path`` unless it stands (412 then)."""
        headers = {**self.tokens[who], "If-None-Match": "*"}
        answer = await self.api.put(f"/v1/agencies/{AGENCY}{path}", json=body, headers=headers)
        assert answer.status_code in (200, 201, 412), f"{path}: {answer.text}"
        return answer

    async def get(self, path: str) -> httpx.Response:
        return await self.api.get(f"/v1/agencies/{AGENCY}{path}", headers=self.tokens["admin"])

    async def post(self, path: str, body: object, who: str, **headers: str) -> dict[str, Any]:
        answer = await self.api.post(
            f"/v1/agencies/{AGENCY}{path}", json=body, headers={**self.tokens[who], **headers}
        )
        assert answer.is_success, f"{path}: {answer.text}"
        found: dict[str, Any] = answer.json()
        return found

    async def people(self) -> None:
        await self.put("", {"name": AGENCY})
        await self.put(f"/caregivers/{CG}", {"name": "Cara", "skills": ["first_aid"]})
        await self.put(f"/patients/{PATIENT}", {"name": "Ada", "lat": 53.8, "lon": -1.55})

    async def kept(self) -> None:
        """Whatever a route deletes made again: each record the routes' paths name stands."""
        device = await self.get(f"/devices/{OWN['device_id']}")
        if device.status_code == 404 or device.json().get("decommissioned"):
            self.devices += 1
            OWN["device_id"] = f"{DEVICE}{self.devices}" if self.devices > 1 else DEVICE
            await self.put(
                f"/devices/{OWN['device_id']}", {"kind": "pendant", "patient_id": PATIENT}
            )
        await self.put(
            f"/caregivers/{CG}/certificates/{OWN['kind']}", {"expires_at": "2031-01-01T00:00:00Z"}
        )
        shifts = (
            await self.get(
                f"/caregivers/{CG}/shifts?from=2031-01-01T00:00:00Z&to=2031-01-02T00:00:00Z"
            )
        ).json()
        if OWN["shift_id"] not in {str(s["id"]) for s in shifts["items"]}:
            shift = {"starts_at": "2031-01-01T08:00:00Z", "ends_at": "2031-01-01T16:00:00Z"}
            OWN["shift_id"] = str(
                (await self.post(f"/caregivers/{CG}/shifts", shift, "dispatcher"))["id"]
            )
        await self.put(f"/owntracks/{OWN['user']}/{OWN['device']}", {"caregiver_id": CG})
        visit = {
            "patient_id": PATIENT,
            "caregiver_id": CG,
            "starts_at": "2031-01-01T09:00:00Z",
            "ends_at": "2031-01-01T10:00:00Z",
            "service": "personal care",
            "tasks": ["wash", "dress"],
        }
        await self.put(f"/visits/{OWN['visit_id']}", visit, "dispatcher")
        await self.put(f"/patients/{PATIENT}/fence", {"radius_m": 50}, "dispatcher")
        doses = {"doses": [{"name": "digoxin", "at": "08:00"}, {"name": "aspirin", "at": "20:00"}]}
        await self.put(f"/patients/{PATIENT}/medication", doses, "dispatcher")

    async def dispatched(self, db: Database, redis: aioredis.Redis, settings: Settings) -> None:
        """An incident assigned, an alarm acknowledged, a command on it, a visit alert."""
        now = time.time()
        incident = await IncidentStore(db).open(
            event_id=f"ev-{TAG}",
            agency_id=AGENCY,
            patient_id=PATIENT,
            device_id=OWN["device_id"],
            kind="fall",
            severity=1,
            at=now - 60,
        )
        assert incident is not None
        assert (
            await HandoverStore(db).assign(incident.id, CG, AGENCY, "dispatcher:desk", now)
        ).done
        OWN["incident_id"] = incident.id
        alarms = AlarmStore(db)
        alarm = await alarms.raise_alarm(
            AGENCY,
            f"device:{OWN['device_id']}",
            "device_offline",
            "major",
            now - 30,
            patient_id=PATIENT,
        )
        OWN["alarm_id"] = alarm.id
        command = await self.post(
            f"/alarms/{alarm.id}/acknowledge", None, "dispatcher", **{"Idempotency-Key": TAG}
        )
        OWN["command_id"] = command["command_id"]
        late = AlertChange("late", True, AGENCY, PATIENT, CG, OWN["visit_id"], now)
        await VisitStore(db, redis, settings).apply_alerts([late])


@pytest.fixture(scope="module")
async def records(
    hostile_api: httpx.AsyncClient,
    tokens: dict[str, dict[str, str]],
    db: Database,
    redis: aioredis.Redis,
    settings: Settings,
) -> Records:
    """The module's agency (its own, tagged) with one of each record a route's path names."""
    made = Records(hostile_api, tokens)
    await made.people()
    await made.kept()
    await made.dispatched(db, redis, settings)
    await made.who_may()
    return made


@pytest.fixture
async def kept(route: tuple[str, str], records: Records) -> AsyncIterator[Records]:
    """The records standing for the route, and made again after one deletes them; where the
    patient lives now (a fence is drawn about her home, which a route before may have moved)."""
    patient = (await records.get(f"/patients/{PATIENT}")).json()
    HOME.update(lat=patient["lat"], lon=patient["lon"])
    yield records
    if route[0] == "DELETE":
        await records.kept()


def test_every_route_is_tried(settings: Settings) -> None:
    """Every route the app serves is tried above, and with every part of its input: a body of
    another type, or a parameter elsewhere (a cookie), needs teaching how to draw it."""
    served = operations(create_app(settings).openapi())
    assert set(served) == set(ROUTES), "a route the app serves is not tried, or one it lacks"
    untaught = {}
    for route, operation in served.items():
        types = set(operation.get("requestBody", {}).get("content", {})) - BODIES
        places = {p["in"] for p in operation.get("parameters", [])} - PLACES
        if types or places:
            untaught[route_id(route)] = sorted(types | places)
    assert untaught == {}


def route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", sorted(ROUTES), ids=route_id)
@EXAMPLES
@given(data=st.data())
async def test_no_input_makes_a_route_answer_5xx(
    kept: Records, route: tuple[str, str], data: st.DataObject
) -> None:
    one = data.draw(requests_of(route), label="request")
    one.caller = data.draw(st.sampled_from(kept.callers[route]), label="caller")
    await kept.current(one)
    answer = await send(kept.api, kept.tokens, one)
    wrong = refusal_is_a_reason(answer)
    if answer.request.url.raw_path.split(b"?")[0] == one.path.encode():  # not dots resolved
        wrong = wrong or answer_is_not_as_documented(route, answer)
    assert wrong is None, f"{one.method} {one.path[:200]} as {one.caller}: {wrong}"
