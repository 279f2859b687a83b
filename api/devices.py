"""``/v1/agencies/{agency}/devices``: an agency's home devices, registered to its patients.

A device registered where the system runs its own broker (``careknot up``'s Mosquitto, dynamic
security) is given broker credentials of its own on creation: a username (its id) and a password
shown once, in the answer to its creation, never again (``credentials``); its role lets it publish
only under its own topics. ``POST .../credentials`` gives it a new password (a device lost or
reset), the old one refused from then on. Where the broker is another's, credentials are
provisioned there (``credentials`` is null).

``DELETE`` decommissions a device: its broker client is withdrawn (it can no longer connect),
ingest refuses what it still publishes, the devices worker stops watching its health and clears
what that had raised (within ``device_decommissions_read_s``), and its home's routine no longer
counts on it. It stays listed (``decommissioned``) with its history; its id is not given to
another device (409 ``decommissioned``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.postgres import DeviceRow
from api.auth import Caller, may_administer, may_manage
from api.broker import Credentials, credentials_for, withdraw
from api.problems import Refused
from api.resources import (
    ID,
    PRECONDITION_RESPONSES,
    WRITE_RESPONSES,
    After,
    AgencyId,
    IfMatch,
    IfNoneMatch,
    Limit,
    Page,
    Precondition,
    directory,
    etag,
    page,
    versioned,
)
from devices.kinds import KINDS

DeviceId = Annotated[str, Path(pattern=ID, description="the device's id (its MQTT username)")]

router = APIRouter(prefix="/v1/agencies/{agency_id}/devices", tags=["devices"])


class DeviceIn(BaseModel):
    kind: str = Field(description=f"one of {', '.join(sorted(KINDS))}", max_length=64)
    patient_id: str = Field(pattern=ID, description="the patient whose home it is in")


class Device(DeviceIn):
    id: str
    agency_id: str
    decommissioned: bool = False


class Registered(Device):
    credentials: Credentials | None = Field(
        default=None, description="on creation, where the system runs its own broker"
    )


def _out(row: DeviceRow) -> Device:
    return Device(
        id=row.id,
        agency_id=row.agency_id,
        patient_id=row.patient_id,
        kind=row.kind,
        decommissioned=row.decommissioned,
    )


async def _credentials(request: Request, row: DeviceRow) -> Credentials | None:
    return await credentials_for(request.app.state.settings, row.agency_id, "dev", row.id)


@router.get("", summary="the agency's devices, a page at a time")
async def list_devices(
    request: Request, claims: Caller, agency_id: AgencyId, limit: Limit = 100, after: After = ""
) -> Page[Device]:
    may_manage(claims, agency_id)
    return page(await directory(request).devices(agency_id, limit + 1, after), limit, _out)


@router.get("/{device_id}", response_model=Device, summary="one device, its version")
async def get_device(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, device_id: DeviceId
) -> Device:
    may_manage(claims, agency_id)
    found = await directory(request).device(agency_id, device_id)
    return versioned(response, found, _out, "unknown_device", device_id)


@router.put(
    "/{device_id}",
    response_model=Registered,
    response_model_exclude_none=True,
    summary="register a device (its broker credentials, once) or change it",
    responses={
        **WRITE_RESPONSES,
        409: {"description": "the id is another agency's, or decommissioned"},
        422: {"description": "unknown kind, or not the agency's patient"},
    },
)
async def put_device(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    device_id: DeviceId,
    body: DeviceIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Registered:
    may_administer(claims, agency_id)
    row = DeviceRow(device_id, agency_id, body.patient_id, body.kind)
    given = Precondition(if_match, if_none_match)
    written = await directory(request).put_device(row, lambda c: given.holds(c, _out))
    if written in ("other_agency", "decommissioned"):
        raise Refused(409, written, device_id)
    if written in ("unknown_patient", "unknown_device_kind"):
        raise Refused(422, written, body.patient_id if written == "unknown_patient" else body.kind)
    if written == "precondition_failed":
        raise given.refuse("a device")
    created = written == "created"
    credentials = await _credentials(request, row) if created else None
    response.status_code = 201 if created else 200
    response.headers["ETag"] = etag(_out(row))
    return Registered(**_out(row).model_dump(), credentials=credentials)


@router.post(
    "/{device_id}/credentials",
    response_model=Credentials,
    summary="a new broker password for the device (the old one refused from now on)",
    responses={404: {"description": "no such device"}, 409: {"description": "not our broker"}},
)
async def new_credentials(
    request: Request, claims: Caller, agency_id: AgencyId, device_id: DeviceId
) -> Credentials:
    may_administer(claims, agency_id)
    row = await directory(request).device(agency_id, device_id)
    if row is None:
        raise Refused(404, "unknown_device", device_id)
    if row.decommissioned:
        raise Refused(409, "decommissioned", device_id)
    credentials = await _credentials(request, row)
    if credentials is None:
        raise Refused(409, "external_broker", "credentials are provisioned at the broker")
    return credentials


@router.delete(
    "/{device_id}",
    status_code=204,
    summary="decommission a device: its broker client withdrawn, its health no longer watched",
    responses={
        404: {"description": "no such device"},
        **PRECONDITION_RESPONSES,
    },
)
async def decommission(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    device_id: DeviceId,
    if_match: IfMatch = None,
) -> Response:
    """Its client is withdrawn first, so a broker away leaves it in service and the call can be
    made again."""
    may_administer(claims, agency_id)
    given = Precondition(if_match, None)
    found = await directory(request).device(agency_id, device_id)
    if found is None:
        raise Refused(404, "unknown_device", device_id)
    if not given.holds(found, _out):
        raise given.refuse("a device")
    await withdraw(request.app.state.settings, agency_id, "dev", device_id)
    gone = await directory(request).decommission_device(
        agency_id, device_id, lambda c: given.holds(c, _out)
    )
    if gone == "precondition_failed":
        raise given.refuse("a device")
    return Response(status_code=204)
