"""The HTTP API's devices, on the real Postgres and Redis, and on a Mosquitto of the module's own
started as ``careknot up`` starts one (dynamic security, default deny): an admin registers a
device to a patient of her agency and it is given broker credentials of its own, once, with which
it publishes under its own topics and nowhere else; a new password refuses the old; an unknown
kind, another agency's patient or device id are refused with their reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiomqtt
import httpx
import pytest

from adapters.mqtt.access import access_of
from adapters.storage.postgres import Database, PatientRow
from careknot.servers.embedded import Started
from kernel.settings import Settings
from tests.adapters.api_clients import client_of
from tests.adapters.own_broker import NOT_AUTHORISED, Reasoned, broker
from tests.support import bearer

pytestmark = pytest.mark.servers

__all__ = ["broker"]  # the module's own Mosquitto (tests.adapters.own_broker)

WITHIN_S = 30.0


@pytest.fixture(scope="module")
def secured(settings: Settings, broker: Started) -> Settings:
    return settings.model_copy(update=broker.update)


@pytest.fixture(scope="module")
async def api(secured: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_of(secured):
        yield client


@pytest.fixture(scope="module")
async def open_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API where the broker is another's: no credentials to give."""
    async for client in client_of(settings.model_copy(update={"mqtt_admin_password_file": ""})):
        yield client


@pytest.fixture
async def agency(db: Database) -> tuple[str, str]:
    """An agency and a patient of it."""
    agency_id = f"apd-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Device Care")
    await db.upsert_patients([PatientRow(f"{agency_id}.p", agency_id, "Ada", 53.8, -1.55)])
    return agency_id, f"{agency_id}.p"


def desk(settings: Settings, agency: str) -> dict[str, str]:
    return bearer(settings, "admin", "desk", agency)


async def test_a_registered_device_publishes_with_its_own_credentials_and_nowhere_else(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str]
) -> None:
    agency_id, patient = agency
    device = f"{agency_id}.fd"
    made = await api.put(
        f"/v1/agencies/{agency_id}/devices/{device}",
        json={"kind": "fall_detector", "patient_id": patient},
        headers=desk(secured, agency_id),
    )
    assert made.status_code == 201, made.text
    given = made.json()["credentials"]
    assert given["username"] == device and len(given["password"]) >= 32
    read = await api.get(
        f"/v1/agencies/{agency_id}/devices/{device}", headers=desk(secured, agency_id)
    )
    assert "credentials" not in read.json()  # shown once, never again

    own, other = f"ck/{agency_id}/dev/{device}/evt", f"ck/{agency_id}/dev/someone-else/evt"
    async with Reasoned(access_of(secured).as_user(device, given["password"])) as fd:
        await fd.publish(own, b'{"type":"fall","ts":1,"seq":1}', qos=1, timeout=WITHIN_S)
        await fd.publish(other, b'{"type":"fall","ts":1,"seq":1}', qos=1, timeout=WITHIN_S)
    taken, refused = (c.value for c in fd.pubacks)
    assert taken < 128 and refused == NOT_AUTHORISED  # 0 or 16 (nobody listening): taken

    fresh = await api.post(
        f"/v1/agencies/{agency_id}/devices/{device}/credentials", headers=desk(secured, agency_id)
    )
    assert fresh.status_code == 200 and fresh.json()["password"] != given["password"]
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with access_of(secured).as_user(device, given["password"]).client():
            pass
    async with access_of(secured).as_user(device, fresh.json()["password"]).client():
        pass


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"kind": "toaster", "patient_id": "{patient}"}, 422, "unknown_device_kind"),
        ({"kind": "pendant", "patient_id": "someone-elses"}, 422, "unknown_patient"),
        ({"kind": "pendant"}, 400, "malformed"),
        ({"kind": "pendant", "patient_id": "bad id!"}, 400, "malformed"),
    ],
)
async def test_a_device_that_cannot_be_registered_is_refused_with_its_reason(
    open_api: httpx.AsyncClient,
    settings: Settings,
    agency: tuple[str, str],
    body: dict[str, str],
    status: int,
    reason: str,
) -> None:
    agency_id, patient = agency
    sent = {k: v.replace("{patient}", patient) for k, v in body.items()}
    refused = await open_api.put(
        f"/v1/agencies/{agency_id}/devices/{agency_id}.x",
        json=sent,
        headers=desk(settings, agency_id),
    )
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    gone = await open_api.get(
        f"/v1/agencies/{agency_id}/devices/{agency_id}.x", headers=desk(settings, agency_id)
    )
    assert gone.status_code == 404  # nothing written


async def test_devices_change_against_their_version_and_stay_in_their_agency(
    open_api: httpx.AsyncClient, settings: Settings, agency: tuple[str, str], db: Database
) -> None:
    agency_id, patient = agency
    url = f"/v1/agencies/{agency_id}/devices/{agency_id}.pd"
    made = await open_api.put(
        url, json={"kind": "pendant", "patient_id": patient}, headers=desk(settings, agency_id)
    )
    assert made.status_code == 201 and "credentials" not in made.json()  # another's broker
    second = f"{agency_id}.p2"
    await db.upsert_patients([PatientRow(second, agency_id, "Bea", 53.8, -1.55)])
    moved = await open_api.put(
        url,
        json={"kind": "pendant", "patient_id": second},
        headers={**desk(settings, agency_id), "If-Match": made.headers["ETag"]},
    )
    assert moved.status_code == 200 and moved.json()["patient_id"] == second
    stale = await open_api.put(
        url,
        json={"kind": "pendant", "patient_id": patient},
        headers={**desk(settings, agency_id), "If-Match": made.headers["ETag"]},
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    page = await open_api.get(
        f"/v1/agencies/{agency_id}/devices", headers=desk(settings, agency_id)
    )
    assert [d["id"] for d in page.json()["items"]] == [f"{agency_id}.pd"]
    other = f"apd-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(other, "Other")
    await db.upsert_patients([PatientRow(f"{other}.p", other, "Cy", 53.8, -1.55)])
    taken = await open_api.put(
        url.replace(f"/agencies/{agency_id}/", f"/agencies/{other}/"),
        json={"kind": "pendant", "patient_id": f"{other}.p"},
        headers=desk(settings, other),
    )
    assert (taken.status_code, taken.json()["reason"]) == (409, "other_agency")
    fresh = await open_api.post(f"{url}/credentials", headers=desk(settings, agency_id))
    assert (fresh.status_code, fresh.json()["reason"]) == (409, "external_broker")


async def test_a_caregivers_phone_gets_credentials_of_its_own(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str]
) -> None:
    agency_id, _ = agency
    cg = f"{agency_id}.cg"
    base = f"/v1/agencies/{agency_id}/caregivers/{cg}"
    nobody = await api.post(f"{base}/credentials", headers=desk(secured, agency_id))
    assert (nobody.status_code, nobody.json()["reason"]) == (404, "unknown_caregiver")
    assert (await api.put(base, json={"name": "Cara"}, headers=desk(secured, agency_id))).is_success
    given = (await api.post(f"{base}/credentials", headers=desk(secured, agency_id))).json()
    assert given["username"] == cg
    loc = f"ck/{agency_id}/cg/{cg}/loc"
    async with Reasoned(access_of(secured).as_user(cg, given["password"])) as phone:
        await phone.publish(loc, b"{}", qos=1, timeout=WITHIN_S)
        await phone.publish(f"ck/{agency_id}/dev/{cg}/evt", b"{}", qos=1, timeout=WITHIN_S)
    taken, refused = (c.value for c in phone.pubacks)
    assert taken < 128 and refused == NOT_AUTHORISED  # her phone's topics only


async def test_a_decommissioned_device_can_no_longer_connect_publish_or_be_registered_again(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str], db: Database
) -> None:
    agency_id, patient = agency
    url = f"/v1/agencies/{agency_id}/devices/{agency_id}.old"
    made = await api.put(
        url, json={"kind": "pendant", "patient_id": patient}, headers=desk(secured, agency_id)
    )
    password = made.json()["credentials"]["password"]
    blind = await api.delete(url, headers=desk(secured, agency_id))
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    assert await db.agencies_of("device", [f"{agency_id}.old"]) != {}  # still in service

    gone = await api.delete(
        url, headers={**desk(secured, agency_id), "If-Match": made.headers["ETag"]}
    )
    assert gone.status_code == 204
    read = await api.get(url, headers=desk(secured, agency_id))
    assert read.json()["decommissioned"] is True  # kept, with its history
    assert await db.agencies_of("device", [f"{agency_id}.old"]) == {}  # ingest refuses it
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with access_of(secured).as_user(f"{agency_id}.old", password).client():
            pass
    again = await api.put(
        url,
        json={"kind": "pendant", "patient_id": patient},
        headers={**desk(secured, agency_id), "If-Match": read.headers["ETag"]},
    )
    assert (again.status_code, again.json()["reason"]) == (409, "decommissioned")
    fresh = await api.post(f"{url}/credentials", headers=desk(secured, agency_id))
    assert (fresh.status_code, fresh.json()["reason"]) == (409, "decommissioned")
    unknown = await api.delete(f"{url}x", headers={**desk(secured, agency_id), "If-Match": '"x"'})
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_device")
