"""The HTTP API's routes as the tests try them: each route's good request on agency A's
records (:data:`CASES`, the attack matrix's table, a case for every route the API has), the
path parameters that name an agency's own records (:func:`path_params`), and the routes of an
OpenAPI document (:func:`operations`).

``TAG`` is drawn once a process, on import: the ids of agency A are the same for every module
that imports them, and none of them is in a test's id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

TAG = uuid.uuid4().hex[:6]
A = f"amx-{TAG}-a"
"""Agency A, whose records the cases name."""
CG, PATIENT = f"{A}.cg", f"{A}.p"


def path_params(agency: str, user: str) -> dict[str, str]:
    """Each path parameter's value naming the agency's own record (its caregiver, patient,
    device, visit...; ``user`` the OwnTracks user of its phone), a new dict each call."""
    return {
        "agency_id": agency,
        "caregiver_id": f"{agency}.cg",
        "patient_id": f"{agency}.p",
        "device_id": f"{agency}.fd",
        "user": user,
        "device": "phone",
        "kind": "first_aid",
        "shift_id": "1",
        "visit_id": f"{agency}.v",
        "incident_id": f"{agency}.inc",
        "alarm_id": f"{agency}.alarm",
        "command": "acknowledge",
        "command_id": f"{agency}.cmd",
    }


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (method, path) of an OpenAPI document, and its operation: parameters, request
    body, responses."""
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


OneRole = Literal["admin", "dispatcher"]
ADMIN: OneRole = "admin"
DISPATCHER: OneRole = "dispatcher"


@dataclass(frozen=True, slots=True)
class Case:
    """How a route is tried: its body (JSON unless ``content``), extra headers, its query."""

    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    only: OneRole | None = None
    """The one role of the agency that may use it (None: a dispatcher and an admin)."""
    own_token: bool = False
    """Anyone may use it on her own good token (renewing it): only those with none are tried."""


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/agencies/{agency_id}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}"): Case(json={"name": "Renamed"}, only=ADMIN),
    ("GET", "/v1/agencies/{agency_id}/caregivers"): Case(),
    ("GET", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}"): Case(
        json={"name": "Cara", "skills": []},
        only=ADMIN,
    ),
    ("POST", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/credentials"): Case(only=ADMIN),
    ("GET", "/v1/agencies/{agency_id}/patients"): Case(),
    ("GET", "/v1/agencies/{agency_id}/patients/{patient_id}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/patients/{patient_id}"): Case(
        json={"name": "Ada", "lat": 53.8, "lon": -1.55},
        only=ADMIN,
    ),
    ("GET", "/v1/agencies/{agency_id}/devices"): Case(),
    ("GET", "/v1/agencies/{agency_id}/devices/{device_id}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/devices/{device_id}"): Case(
        json={"kind": "pendant", "patient_id": PATIENT},
        only=ADMIN,
    ),
    ("POST", "/v1/agencies/{agency_id}/devices/{device_id}/credentials"): Case(only=ADMIN),
    ("DELETE", "/v1/agencies/{agency_id}/devices/{device_id}"): Case(
        headers={"If-Match": '"any"'}, only=ADMIN
    ),
    ("GET", "/v1/agencies/{agency_id}/owntracks"): Case(),
    ("GET", "/v1/agencies/{agency_id}/owntracks/{user}/{device}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/owntracks/{user}/{device}"): Case(
        json={"caregiver_id": CG}, only=ADMIN
    ),
    ("DELETE", "/v1/agencies/{agency_id}/owntracks/{user}/{device}"): Case(
        headers={"If-Match": '"any"'},
        only=ADMIN,
    ),
    ("POST", "/v1/agencies/{agency_id}/owntracks/{user}/{device}/credentials"): Case(only=ADMIN),
    ("GET", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/certificates"): Case(),
    ("GET", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/certificates/{kind}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/certificates/{kind}"): Case(
        json={"expires_at": "2031-01-01T00:00:00Z"},
        only=ADMIN,
    ),
    ("DELETE", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/certificates/{kind}"): Case(
        only=ADMIN
    ),
    ("GET", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/shifts"): Case(),
    ("POST", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/shifts"): Case(
        json={"starts_at": "2031-01-01T08:00:00Z", "ends_at": "2031-01-01T16:00:00Z"}
    ),
    ("DELETE", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/shifts/{shift_id}"): Case(),
    ("GET", "/v1/agencies/{agency_id}/patients/{patient_id}/medication"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/patients/{patient_id}/medication"): Case(
        json={"doses": [{"name": "digoxin", "at": "08:00"}]}
    ),
    ("GET", "/v1/agencies/{agency_id}/patients/{patient_id}/medication/day"): Case(
        params={"day": "2031-01-01"}
    ),
    ("GET", "/v1/agencies/{agency_id}/patients/{patient_id}/fence"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/patients/{patient_id}/fence"): Case(json={"radius_m": 50}),
    ("GET", "/v1/agencies/{agency_id}/visits"): Case(),
    ("GET", "/v1/agencies/{agency_id}/visits/{visit_id}"): Case(),
    ("PUT", "/v1/agencies/{agency_id}/visits/{visit_id}"): Case(
        json={
            "patient_id": PATIENT,
            "caregiver_id": CG,
            "starts_at": "2031-01-01T09:00:00Z",
            "ends_at": "2031-01-01T10:00:00Z",
        }
    ),
    ("DELETE", "/v1/agencies/{agency_id}/visits/{visit_id}"): Case(headers={"If-Match": '"any"'}),
    ("POST", "/v1/agencies/{agency_id}/visits:import"): Case(
        content=b"visit_id,patient_id,caregiver_id,starts_at,ends_at\n",
        headers={"Content-Type": "text/csv"},
    ),
    ("GET", "/v1/agencies/{agency_id}/visits/{visit_id}/evidence"): Case(),
    ("GET", "/v1/agencies/{agency_id}/visit-alerts"): Case(),
    ("GET", "/v1/agencies/{agency_id}/visit-report"): Case(
        params={"since": "2031-01-01T00:00:00Z", "until": "2031-01-02T00:00:00Z"}
    ),
    ("GET", "/v1/agencies/{agency_id}/caregivers/{caregiver_id}/track"): Case(),
    ("GET", "/v1/agencies/{agency_id}/incidents"): Case(),
    ("GET", "/v1/agencies/{agency_id}/incidents/{incident_id}"): Case(),
    ("POST", "/v1/agencies/{agency_id}/incidents/{incident_id}/assign"): Case(
        json={"caregiver_id": CG},
        only=DISPATCHER,
    ),
    ("POST", "/v1/agencies/{agency_id}/incidents/{incident_id}/resolve"): Case(
        json={}, only=DISPATCHER
    ),
    ("GET", "/v1/agencies/{agency_id}/alarms"): Case(),
    ("GET", "/v1/agencies/{agency_id}/alarms/{alarm_id}"): Case(),
    ("POST", "/v1/agencies/{agency_id}/alarms/{alarm_id}/{command}"): Case(only=DISPATCHER),
    ("GET", "/v1/agencies/{agency_id}/commands/{command_id}"): Case(),
    ("POST", "/v1/tokens/renew"): Case(own_token=True),
}
"""How each route is tried on agency A's records (its body, headers and query, and who of A may
use it): a case for every route the API has."""
