"""The HTTP API's OwnTracks phones, on the real Postgres and Redis and on a Mosquitto of the
module's own started as ``careknot up`` starts one (dynamic security, default deny): a
admin registers a caregiver's OwnTracks phone and her user is given broker credentials of
her own, once, with which she publishes under ``owntracks/{user}/`` and nowhere else, and which
ingest's registry maps to the caregiver; her second phone shares them; her last phone
decommissioned, she cannot connect. A user of another caregiver or agency, a username the broker
knows as another publisher's, a stale version, and the other roles are refused with a reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiomqtt
import httpx
import pytest

from adapters.mqtt.access import access_of
from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from careknot.servers.embedded import Started
from kernel.contracts import Role
from kernel.settings import Settings
from tests import support
from tests.adapters.api_clients import client_of
from tests.adapters.own_broker import NOT_AUTHORISED, Reasoned, broker

pytestmark = pytest.mark.servers

__all__ = ["broker"]  # the module's own Mosquitto (tests.adapters.own_broker)

WITHIN_S = 30.0
FIX = b'{"_type":"location","lat":53.8,"lon":-1.55,"tst":1}'


@pytest.fixture(scope="module")
def secured(settings: Settings, broker: Started) -> Settings:
    return settings.model_copy(update=broker.update)


@pytest.fixture(scope="module")
async def api(secured: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_of(secured):
        yield client


@pytest.fixture
async def agency(db: Database) -> tuple[str, str, str]:
    """An agency and two caregivers of it."""
    agency_id = f"apo-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Phone Care")
    ann, bo = f"{agency_id}.ann", f"{agency_id}.bo"
    await db.upsert_caregivers(
        [CaregiverRow(ann, agency_id, "Ann"), CaregiverRow(bo, agency_id, "Bo")]
    )
    return agency_id, ann, bo


def bearer(
    settings: Settings, agency: str, role: Role = "admin", sub: str = "desk"
) -> dict[str, str]:
    return support.bearer(settings, role, sub, agency)


def url(agency: str, user: str = "", device: str = "") -> str:
    base = f"/v1/agencies/{agency}/owntracks"
    return f"{base}/{user}/{device}" if user else base


async def test_her_phone_publishes_its_fixes_as_her_and_nowhere_else(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str, str], db: Database
) -> None:
    agency_id, ann, _ = agency
    user = f"ann-{uuid.uuid4().hex[:6]}"
    desk = bearer(secured, agency_id)
    made = await api.put(url(agency_id, user, "pixel"), json={"caregiver_id": ann}, headers=desk)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert shown["topic"] == f"owntracks/{user}/pixel" and shown["caregiver_id"] == ann
    given = shown["credentials"]
    assert given["username"] == user and len(given["password"]) >= 32
    assert await db.owntracks_caregiver(user, "pixel") == (ann, agency_id)  # ingest's look-up
    read = await api.get(url(agency_id, user, "pixel"), headers=desk)
    assert read.headers["ETag"] == made.headers["ETag"] and "credentials" not in read.json()

    second = await api.put(url(agency_id, user, "tablet"), json={"caregiver_id": ann}, headers=desk)
    assert second.status_code == 201 and "credentials" not in second.json()  # hers already

    her = access_of(secured).as_user(user, given["password"])
    async with Reasoned(her) as phone:
        for topic in (
            f"owntracks/{user}/pixel",
            f"owntracks/{user}/tablet",
            f"owntracks/{user}/pixel/cmd",  # her own commands: the services' to send
            "owntracks/someone-else/pixel",
            f"ck/{agency_id}/cg/{ann}/loc",
        ):
            await phone.publish(topic, FIX, qos=1, timeout=WITHIN_S)
    codes = [c.value for c in phone.pubacks]
    assert [c < 128 for c in codes] == [True, True, False, False, False]
    assert set(codes[2:]) == {NOT_AUTHORISED}

    listed = await api.get(url(agency_id), headers=desk)
    assert [p["id"] for p in listed.json()["items"]] == [f"{user}/pixel", f"{user}/tablet"]
    first_page = await api.get(url(agency_id), params={"limit": 1}, headers=desk)
    assert first_page.json()["next"] == f"{user}/pixel"

    for device in ("pixel", "tablet"):
        current = await api.get(url(agency_id, user, device), headers=desk)
        gone = await api.delete(
            url(agency_id, user, device), headers={**desk, "If-Match": current.headers["ETag"]}
        )
        assert gone.status_code == 204
    assert await db.owntracks_caregiver(user, "pixel") is None
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with her.client():
            pass


async def test_a_new_password_refuses_the_old(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str, str]
) -> None:
    agency_id, ann, _ = agency
    user, desk = f"ann-{uuid.uuid4().hex[:6]}", bearer(secured, agency_id)
    made = await api.put(url(agency_id, user, "p"), json={"caregiver_id": ann}, headers=desk)
    old = made.json()["credentials"]["password"]
    fresh = await api.post(f"{url(agency_id, user, 'p')}/credentials", headers=desk)
    assert fresh.status_code == 200 and fresh.json()["password"] != old
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with access_of(secured).as_user(user, old).client():
            pass
    async with access_of(secured).as_user(user, fresh.json()["password"]).client():
        pass


async def test_a_user_is_one_caregivers_and_an_agencys_and_changes_against_its_version(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str, str], db: Database
) -> None:
    agency_id, ann, bo = agency
    user, desk = f"ann-{uuid.uuid4().hex[:6]}", bearer(secured, agency_id)
    made = await api.put(url(agency_id, user, "p"), json={"caregiver_id": ann}, headers=desk)
    assert made.status_code == 201

    bos = await api.put(url(agency_id, user, "q"), json={"caregiver_id": bo}, headers=desk)
    assert (bos.status_code, bos.json()["reason"]) == (409, "another_caregivers_user")
    blind = await api.put(url(agency_id, user, "p"), json={"caregiver_id": bo}, headers=desk)
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    moved = await api.put(
        url(agency_id, user, "p"),
        json={"caregiver_id": bo},
        headers={**desk, "If-Match": made.headers["ETag"]},
    )
    assert moved.status_code == 200 and moved.json()["caregiver_id"] == bo
    stale = await api.delete(
        url(agency_id, user, "p"), headers={**desk, "If-Match": made.headers["ETag"]}
    )
    assert (stale.status_code, stale.json()["reason"]) == (412, "changed")
    assert await db.owntracks_caregiver(user, "p") == (bo, agency_id)

    other = f"apo-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(other, "Other")
    await db.upsert_caregivers([CaregiverRow(f"{other}.cy", other, "Cy")])
    theirs = await api.put(
        url(other, user, "r"), json={"caregiver_id": f"{other}.cy"}, headers=bearer(secured, other)
    )
    assert (theirs.status_code, theirs.json()["reason"]) == (409, "other_agency")
    not_ours = await api.put(
        url(agency_id, f"x-{user}", "p"), json={"caregiver_id": f"{other}.cy"}, headers=desk
    )
    assert (not_ours.status_code, not_ours.json()["reason"]) == (422, "unknown_caregiver")
    peek = await api.get(url(other, user, "p"), headers=bearer(secured, other))
    assert (peek.status_code, peek.json()["reason"]) == (404, "unknown_phone")


async def test_a_username_the_broker_knows_as_another_publishers_is_never_handed_over(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str, str], db: Database
) -> None:
    """Agency A's device is a broker client named by its id; agency B names an OwnTracks user,
    and a caregiver, the same: neither gets a password for that client, and the device's own
    still works."""
    agency_id, _, _ = agency
    device = f"{agency_id}.fd"
    patient = f"{agency_id}.p"
    await db.upsert_patients([PatientRow(patient, agency_id, "Ada", 53.8, -1.55)])
    made = await api.put(
        f"/v1/agencies/{agency_id}/devices/{device}",
        json={"kind": "fall_detector", "patient_id": patient},
        headers=bearer(secured, agency_id),
    )
    password = made.json()["credentials"]["password"]

    b = f"apo-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(b, "Intruder Care")
    await db.upsert_caregivers([CaregiverRow(f"{b}.eve", b, "Eve")])
    as_user = await api.put(
        url(b, device, "p"), json={"caregiver_id": f"{b}.eve"}, headers=bearer(secured, b)
    )
    assert (as_user.status_code, as_user.json()["reason"]) == (409, "username_taken")
    await db.upsert_caregivers(
        [CaregiverRow(device, b, "Eve again")]
    )  # an id free among caregivers
    as_phone = await api.post(
        f"/v1/agencies/{b}/caregivers/{device}/credentials", headers=bearer(secured, b)
    )
    assert (as_phone.status_code, as_phone.json()["reason"]) == (409, "username_taken")
    async with access_of(secured).as_user(device, password).client():
        pass  # the device's password is still its own


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        (("caregiver", "{ann}"), 403, "forbidden"),
        (("family", "fam"), 403, "forbidden"),
        (("dispatcher", "desk", "other"), 403, "other_agency"),
        (None, 401, "unauthorised"),
    ],
)
async def test_only_the_agencys_admins_manage_its_phones(
    api: httpx.AsyncClient,
    secured: Settings,
    agency: tuple[str, str, str],
    who: tuple[str, ...] | None,
    status: int,
    reason: str,
) -> None:
    agency_id, ann, _ = agency
    headers: dict[str, str] = {}
    if who is not None:
        role, sub, *elsewhere = who
        whose = "apo-elsewhere" if elsewhere else agency_id
        headers = bearer(secured, whose, role, sub.replace("{ann}", ann))  # type: ignore[arg-type]
    tries = [
        api.get(url(agency_id), headers=headers),
        api.put(url(agency_id, "u", "d"), json={"caregiver_id": ann}, headers=headers),
        api.delete(url(agency_id, "u", "d"), headers=headers),
        api.post(f"{url(agency_id, 'u', 'd')}/credentials", headers=headers),
    ]
    for attempt in tries:
        refused = await attempt
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    desk = bearer(secured, agency_id)
    assert (await api.get(url(agency_id, "u", "d"), headers=desk)).status_code == 404


@pytest.mark.parametrize(
    "path", ["/v1/agencies/{a}/owntracks/bad user/p", "/v1/agencies/{a}/owntracks/u/" + "d" * 65]
)
async def test_a_name_owntracks_cannot_put_in_a_topic_is_malformed(
    api: httpx.AsyncClient, secured: Settings, agency: tuple[str, str, str], path: str
) -> None:
    agency_id, ann, _ = agency
    refused = await api.put(
        path.replace("{a}", agency_id),
        json={"caregiver_id": ann},
        headers=bearer(secured, agency_id),
    )
    assert (refused.status_code, refused.json()["reason"]) == (400, "malformed")
