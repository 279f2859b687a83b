"""The attack matrix of the HTTP API, on the real Postgres and Redis: every route the API has,
read from its OpenAPI document (a route added without a case in ``api_routes.CASES`` fails
``test_every_route_is_in_the_matrix``), is tried by everyone who must not use it on agency A's
own resources: nobody, a token expired, a token of a revoked person, a token signed with a key
that is not the API's, a family member of A asking for another's relative, a caregiver of A
asking for someone else's, a
dispatcher of agency B; and, on the routes only one role of A may use, A's other role (a
dispatcher enrolling people or devices, an admin sending a dispatcher's command); on the routes
anyone may use on her own good token (renewing it), those with no good token. Each is
refused with the status and reason its kind must have (401 ``unauthorised``; 403 ``forbidden``
or ``other_agency``), the refusal's body says only why (no field of A's resources in it: no
leak), nothing is written, and the refusals are counted.

What an admin and a dispatcher of A may do on each route is in the route's own tests
(``tests/adapters/test_api_*.py``).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from adapters.storage.revocations import Revocations
from api.app import create_app
from kernel import tokens
from kernel.contracts import Role
from kernel.settings import Settings
from tests.adapters.api_routes import (
    ADMIN,
    CASES,
    CG,
    DISPATCHER,
    PATIENT,
    TAG,
    A,
    Case,
    operations,
    path_params,
)
from tests.support import free_port, http_get, scrape

pytestmark = pytest.mark.servers

B = f"amx-{TAG}-b"
"""Another agency, whose dispatcher is an outsider to A."""
OTHER_CG, DEVICE = f"{A}.cg2", f"{A}.fd"
SECRET = f"Ada Secret {TAG}"
"""The patient's name: in no refusal's body."""
PARAMS = path_params(A, user=f"ot-{TAG}")
"""Each path parameter's value: agency A's own resources."""


@dataclass(frozen=True, slots=True)
class Outsider:
    """Someone who must not use the routes ``on`` takes (every route: None), and how the API
    must refuse them."""

    headers: Callable[[Settings], dict[str, str]]
    status: int
    reasons: frozenset[str]
    on: str | None = None
    """Only the routes whose one role (``Case.only``) this is: its own agency's other role."""

    def tries(self, case: Case) -> bool:
        if case.own_token:
            return self.status == 401  # no good token of her own to use it on
        return self.on is None or case.only == self.on


def bearer(settings: Settings, role: Role, sub: str, agency: str, **kw: Any) -> dict[str, str]:
    ring = kw.pop("ring", tokens.keyring_of(settings))
    now = kw.pop("now", time.time())
    token = tokens.mint(ring, role, sub, agency, kw.pop("ttl_s", 600.0), now, **kw)
    return {"Authorization": f"Bearer {token}"}


REVOKED = f"revoked-{TAG}"
FORBIDDEN = frozenset({"forbidden"})
OUTSIDERS: dict[str, Outsider] = {
    "nobody": Outsider(lambda s: {}, 401, frozenset({"unauthorised"})),
    "an expired token": Outsider(
        lambda s: bearer(s, "dispatcher", "desk", A, now=time.time() - 3600, ttl_s=600),
        401,
        frozenset({"unauthorised"}),
    ),
    "a revoked dispatcher of A": Outsider(
        lambda s: bearer(s, "dispatcher", REVOKED, A, now=time.time() - 5),
        401,
        frozenset({"unauthorised"}),
    ),
    "a token of another key": Outsider(
        lambda s: bearer(
            s, "dispatcher", "desk", A, ring=tokens.Keyring.parse(f"x:{uuid.uuid4().hex * 2}")
        ),
        401,
        frozenset({"unauthorised"}),
    ),
    "a family member of A, for another's relative": Outsider(
        lambda s: bearer(s, "family", "fam", A, patients=[f"{A}.someone-else"]), 403, FORBIDDEN
    ),
    "a caregiver of A, for another's": Outsider(
        lambda s: bearer(s, "caregiver", OTHER_CG, A), 403, FORBIDDEN
    ),
    "a dispatcher of B": Outsider(
        lambda s: bearer(s, "dispatcher", "desk", B), 403, frozenset({"other_agency"})
    ),
    "a dispatcher of A, on an admin's route": Outsider(
        lambda s: bearer(s, "dispatcher", "desk", A), 403, FORBIDDEN, on=ADMIN
    ),
    "an admin of A, on a dispatcher's command": Outsider(
        lambda s: bearer(s, "admin", "boss", A), 403, FORBIDDEN, on=DISPATCHER
    ),
}


def routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) of the API's own routes, as its OpenAPI document lists them."""
    return set(operations(app.openapi()))


def path_of(template: str) -> str:
    return template.format(**PARAMS)


@pytest.fixture(scope="module")
async def a_resources(db: Database, redis: aioredis.Redis, settings: Settings) -> None:
    """Agency A with a caregiver, another caregiver, a patient and a device; agency B; a
    dispatcher of A whose tokens are revoked."""
    for agency in (A, B):
        await db.upsert_agency(agency, agency)
    await db.upsert_caregivers([CaregiverRow(CG, A, "Cara"), CaregiverRow(OTHER_CG, A, "Olive")])
    await db.upsert_patients([PatientRow(PATIENT, A, SECRET, 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(DEVICE, A, PATIENT, "pendant")])
    await Revocations(redis, settings.keys).revoke("dispatcher", REVOKED, time.time())


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """This module's app (its refusals' counts read here), in process, its lifespan entered."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def test_every_route_is_in_the_matrix(app: FastAPI) -> None:
    have = routes(app)
    assert have - CASES.keys() == set(), "a route with no case in the attack matrix"
    assert CASES.keys() - have == set(), "a case for a route the API no longer has"


@pytest.mark.parametrize("who", list(OUTSIDERS))
async def test_everyone_who_must_not_is_refused_on_every_route(
    app: FastAPI,
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    a_resources: None,
    who: str,
) -> None:
    outsider = OUTSIDERS[who]
    before = await snapshot(db)
    counted = Counter(app.state.refused)
    answers = {}
    tried = {route: case for route, case in CASES.items() if outsider.tries(case)}
    assert tried  # it has routes to be refused on
    for (method, template), case in tried.items():
        headers = {**case.headers, **outsider.headers(settings)}
        answer = await api.request(
            method,
            path_of(template),
            json=case.json,
            content=case.content,
            headers=headers,
            params=case.params,
        )
        answers[(method, template)] = answer
    wrong = {
        route: (a.status_code, a.text[:200])
        for route, a in answers.items()
        if a.status_code != outsider.status or a.json().get("reason") not in outsider.reasons
    }
    assert wrong == {}
    for a in answers.values():
        assert set(a.json()) == {"reason", "detail"}  # why, and nothing of A's
        assert SECRET not in a.text and "Cara" not in a.text and "pendant" not in a.text
    assert await snapshot(db) == before  # nothing written
    newly = Counter(app.state.refused)
    newly.subtract(counted)
    assert sum(newly.values()) == len(tried)  # each refusal counted, by its status and reason
    assert {status for status, _ in +newly} == {outsider.status}


async def snapshot(db: Database) -> list[Any]:
    """What agency A has in the record, to see that nothing was written."""
    return [
        await db.pool.fetch(
            f"SELECT * FROM {table} WHERE {column} = ANY($1::text[]) ORDER BY 1", ids
        )
        for table, column, ids in (
            ("agencies", "id", [A, B]),
            ("caregivers", "agency_id", [A, B]),
            ("patients", "agency_id", [A, B]),
            ("devices", "agency_id", [A, B]),
            ("owntracks_devices", "caregiver_id", [CG, OTHER_CG]),
            ("certificates", "caregiver_id", [CG, OTHER_CG]),
            ("shifts", "caregiver_id", [CG, OTHER_CG]),
            ("fences", "patient_id", [PATIENT]),
            ("medication_schedules", "patient_id", [PATIENT]),
            ("visits", "agency_id", [A, B]),
            ("events", "agency_id", [A, B]),  # the commands the API sent among them
        )
    ]


async def test_the_refusals_are_served_as_counts_on_the_apis_own_metrics_port(
    settings: Settings,
) -> None:
    own = settings.model_copy(update={"api_metrics_port": free_port()})
    app = create_app(own)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for _ in range(3):
                await client.get(f"/v1/agencies/{A}/patients")  # no token
            await client.get("/v1/nowhere", headers=bearer(own, "dispatcher", "desk", A))
            on_api = await client.get("/metrics")
        status, health = await http_get(own.api_metrics_port, "/healthz")
        counts = await scrape(own.api_metrics_port)
    assert on_api.status_code == 404  # not on the API's own port
    assert 'careknot_api_refused_total{reason="unauthorised",status="401"} 3.0' in counts
    assert 'careknot_api_refused_total{reason="no_such_route",status="404"} 2.0' in counts
    assert status == 200 and orjson.loads(health) == {
        "ok": True,
        "postgres": True,
        "redis": True,
        "kafka": True,
        "down": [],
    }
