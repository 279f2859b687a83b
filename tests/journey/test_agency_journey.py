"""A new agency, from nothing to a dispatched emergency and a verified visit, through the HTTP API
alone, end to end on real servers.

Whoever runs the system gives the agency's admin an access token for its id (here minted with the
system's key, as ``careknot token --role admin`` mints it). Through the API she registers the
agency, a caregiver with broker credentials for her phone, a patient with her home's fence and a
fall detector with credentials of its own; a dispatcher puts a visit on the roster. The phone and
the detector then speak MQTT with their own credentials, nothing else: the caregiver drives
towards the visit, the detector reports a fall, the caregiver is offered it on her WebSocket and
takes it, the dispatcher resolves it through the API and reads what became of her command and
the incident's timeline; then the caregiver arrives, stays and leaves, and the visit's check-in
and check-out evidence is read through the API.

``careknot up`` runs as a child process, without the simulated city, with a Mosquitto of its own
(dynamic security, default deny: the phone and the detector can publish only as themselves),
with short dwell times so the visit takes seconds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from adapters.mqtt.access import access_of
from kernel.contracts import Role
from kernel.settings import Settings
from tests import support
from tests.journey.driving import Drive
from tests.journey.harness import own_worker_ready, running_system
from tests.support import Phone, free_port, is_type, token, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"new-agency-{RUN}"
CAREGIVER, PATIENT, DEVICE, VISIT = (f"{AGENCY}.{n}" for n in ("cara", "pat", "fd", "visit"))
HOME = (53.7760, -1.6010)
DWELL_IN_S, DWELL_OUT_S = 2.0, 3.0
WITHIN_S = 60.0


@pytest.fixture(scope="module")
def system(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("up-agency")
    with running_system(
        migrated,
        workdir,
        simulate=False,
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # nothing there: up starts its own
        visit_dwell_in_s=DWELL_IN_S,
        visit_dwell_out_s=DWELL_OUT_S,
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def api(system: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The system's API over its port, once it answers."""
    await own_worker_ready(system)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.api_port}") as client:

        async def answers() -> bool | None:
            try:
                await client.get("/openapi.json")
            except httpx.TransportError:
                return None
            return True

        await wait_for(answers, WITHIN_S, "the API")
        yield client


def bearer(settings: Settings, role: Role, sub: str) -> dict[str, str]:
    return support.bearer(settings, role, sub, AGENCY)


async def said(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def enrol(api: httpx.AsyncClient, s: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """The agency and its people, home, device and roster, through the API: the phone's and the
    detector's broker credentials."""
    admin, desk = bearer(s, "admin", "boss"), bearer(s, "dispatcher", "desk")
    base = f"/v1/agencies/{AGENCY}"
    await said(await api.put(base, json={"name": "New Agency Care"}, headers=admin), 201)
    await said(
        await api.put(f"{base}/caregivers/{CAREGIVER}", json={"name": "Cara"}, headers=admin), 201
    )
    phone = await said(
        await api.post(f"{base}/caregivers/{CAREGIVER}/credentials", headers=admin), 200
    )
    home = {"name": "Pat New", "lat": HOME[0], "lon": HOME[1], "details": {"access": "key safe"}}
    await said(await api.put(f"{base}/patients/{PATIENT}", json=home, headers=admin), 201)
    fence = await api.get(f"{base}/patients/{PATIENT}/fence", headers=desk)
    await said(
        await api.put(
            f"{base}/patients/{PATIENT}/fence",
            json={"radius_m": 100.0},
            headers={**desk, "If-Match": fence.headers["ETag"]},
        ),
        201,  # her own, where the default stood
    )
    detector = {"kind": "fall_detector", "patient_id": PATIENT}
    device = await said(
        await api.put(f"{base}/devices/{DEVICE}", json=detector, headers=admin), 201
    )
    start = time.time() + 600  # her next visit: she arrives early for it
    visit = {
        "patient_id": PATIENT,
        "caregiver_id": CAREGIVER,
        "starts_at": _iso(start),
        "ends_at": _iso(start + 1800),
        "tasks": ["lunch"],
    }
    await said(await api.put(f"{base}/visits/{VISIT}", json=visit, headers=desk), 201)
    return phone, device["credentials"]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def test_a_new_agency_dispatches_an_emergency_and_verifies_a_visit_through_the_api(
    api: httpx.AsyncClient, system: Settings
) -> None:
    s, base = system, f"/v1/agencies/{AGENCY}"
    phone_login, detector_login = await enrol(api, s)
    assert phone_login["username"] == CAREGIVER and detector_login["username"] == DEVICE
    desk = bearer(s, "dispatcher", "desk")
    carer = await Phone.open(s, token(s, "caregiver", CAREGIVER, AGENCY))
    her_phone = access_of(s).as_user(phone_login["username"], phone_login["password"])
    detector = access_of(s).as_user(detector_login["username"], detector_login["password"])
    async with her_phone.client(identifier=f"phone-{RUN}") as mqtt:
        drive = Drive(mqtt, f"ck/{AGENCY}/cg/{CAREGIVER}/loc", HOME)
        await drive.at(800.0)  # on her way to the visit

        async def seen_on_her_way() -> bool | None:
            shown = (await api.get(f"{base}/caregivers/{CAREGIVER}/track", headers=desk)).json()
            return True if shown.get("features") else None

        await wait_for(seen_on_her_way, WITHIN_S, "her first fix in her track")

        async with detector.client(identifier=f"detector-{RUN}") as device:
            fall = {"type": "fall", "ts": time.time(), "seq": 1, "data": {}}
            await device.publish(f"ck/{AGENCY}/dev/{DEVICE}/evt", orjson.dumps(fall), qos=1)
        offer = await carer.expect(is_type("offer"), within=WITHIN_S)
        incident_id = offer["incident"]["incident_id"]
        await carer.send({"type": "accept", "offer_id": offer["offer_id"]})
        won = await carer.expect(is_type("offer_result", offer_id=offer["offer_id"]))
        assert won["outcome"] == "assigned"

        sent = await said(
            await api.post(f"{base}/incidents/{incident_id}/resolve", json={}, headers=desk), 202
        )

        async def decided() -> dict[str, Any] | None:
            outcome = (await api.get(f"{base}/commands/{sent['command_id']}", headers=desk)).json()
            return None if outcome["outcome"] == "pending" else outcome

        assert (await wait_for(decided, WITHIN_S, "the resolve's outcome"))["outcome"] == "done"
        incident = await said(await api.get(f"{base}/incidents/{incident_id}", headers=desk), 200)
        assert incident["state"] == "resolved" and incident["assignee_id"] == CAREGIVER
        assert incident["device_id"] == DEVICE and incident["kind"] == "fall"
        steps = [step["kind"] for step in incident["timeline"]]
        assert steps[0] == "incident_opened" and steps[-1] == "incident_resolved", steps

        await drive.path(780.0, 0.0)  # then to her visit
        for _ in range(int(DWELL_IN_S) + 3):
            await drive.at(5.0)
        await drive.path(20.0, 400.0)  # and off again
        for _ in range(int(DWELL_OUT_S) + 3):
            await drive.at(400.0)

    async def verified() -> dict[str, Any] | None:
        shown = (await api.get(f"{base}/visits/{VISIT}/evidence", headers=desk)).json()
        return shown if shown["state"] == "left" else None

    visit = await wait_for(verified, WITHIN_S, "the visit checked in and out")
    check_in, check_out = visit["check_in"], visit["check_out"]
    assert check_in["source"] == "gps" and check_in["distance_m"] < 100
    assert check_out["at"] > check_in["at"]
    await carer.close()
