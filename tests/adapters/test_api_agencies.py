"""The HTTP API's agencies, on the real Postgres and Redis: an agency starts from nothing with an
admin's token for its id; until she registers it, its routes tell her ``unknown_agency`` (never a
server error), and tell an outsider only that it is not theirs; once registered, it is renamed
against its version and its people can be enrolled."""

from __future__ import annotations

import uuid

import httpx
import pytest

from adapters.storage.postgres import Database
from kernel.contracts import Role
from kernel.settings import Settings
from tests import support

pytestmark = pytest.mark.servers


def bearer(settings: Settings, role: Role, agency: str) -> dict[str, str]:
    return support.bearer(settings, role, f"{role}-1", agency)


async def test_an_agency_is_registered_by_its_admin_before_anything_else(
    api: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    agency = f"new-{uuid.uuid4().hex[:8]}"
    admin, desk = bearer(settings, "admin", agency), bearer(settings, "dispatcher", agency)
    carer = f"/v1/agencies/{agency}/caregivers/{agency}.cg"
    early = await api.put(carer, json={"name": "Cara"}, headers=admin)
    assert (early.status_code, early.json()["reason"]) == (404, "unknown_agency")
    outsider = await api.get(
        f"/v1/agencies/{agency}/caregivers", headers=bearer(settings, "admin", "elsewhere")
    )
    assert (outsider.status_code, outsider.json()["reason"]) == (403, "other_agency")

    by_desk = await api.put(f"/v1/agencies/{agency}", json={"name": "New Care"}, headers=desk)
    assert (by_desk.status_code, by_desk.json()["reason"]) == (403, "forbidden")
    made = await api.put(f"/v1/agencies/{agency}", json={"name": "New Care"}, headers=admin)
    assert made.status_code == 201 and made.json() == {"id": agency, "name": "New Care"}
    blind = await api.put(f"/v1/agencies/{agency}", json={"name": "Other"}, headers=admin)
    assert (blind.status_code, blind.json()["reason"]) == (428, "precondition_required")
    renamed = await api.put(
        f"/v1/agencies/{agency}",
        json={"name": "New Home Care"},
        headers={**admin, "If-Match": made.headers["ETag"]},
    )
    assert renamed.status_code == 200
    read = await api.get(f"/v1/agencies/{agency}", headers=desk)
    assert (
        read.json()["name"] == "New Home Care" and read.headers["ETag"] == renamed.headers["ETag"]
    )

    assert (await api.put(carer, json={"name": "Cara"}, headers=admin)).status_code == 201
