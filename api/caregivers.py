"""``/v1/agencies/{agency}/caregivers``: an agency's caregivers, listed a page at a time, read one
by one with their version (``ETag``), and created or replaced with ``PUT`` only against the
version the client read (``If-Match``; ``If-None-Match: *`` to create only): two dispatchers
cannot overwrite each other's change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.postgres import CaregiverRow
from api.auth import Caller, may_administer, may_manage, may_read_caregiver
from api.broker import Credentials, credentials_for
from api.problems import Refused
from api.resources import (
    ID,
    TEXT,
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

CaregiverId = Annotated[str, Path(pattern=ID, description="the caregiver's id")]

router = APIRouter(prefix="/v1/agencies/{agency_id}/caregivers", tags=["caregivers"])


class CaregiverIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=TEXT)
    skills: list[Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT)]] = Field(
        default_factory=list, max_length=32, description="what she is trained for (hoist...)"
    )


class Caregiver(CaregiverIn):
    id: str
    agency_id: str


def _out(row: CaregiverRow) -> Caregiver:
    return Caregiver(id=row.id, agency_id=row.agency_id, name=row.name, skills=list(row.skills))


@router.get("", summary="the agency's caregivers, a page at a time")
async def list_caregivers(
    request: Request, claims: Caller, agency_id: AgencyId, limit: Limit = 100, after: After = ""
) -> Page[Caregiver]:
    may_manage(claims, agency_id)
    return page(await directory(request).caregivers(agency_id, limit + 1, after), limit, _out)


@router.get("/{caregiver_id}", response_model=Caregiver, summary="one caregiver, its version")
async def get_caregiver(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
) -> Caregiver:
    may_read_caregiver(claims, agency_id, caregiver_id)
    found = await directory(request).caregiver(agency_id, caregiver_id)
    return versioned(response, found, _out, "unknown_caregiver", caregiver_id)


@router.put(
    "/{caregiver_id}",
    response_model=Caregiver,
    summary="create or replace a caregiver",
    responses=WRITE_RESPONSES,
)
async def put_caregiver(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    body: CaregiverIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Caregiver:
    may_administer(claims, agency_id)
    row = CaregiverRow(caregiver_id, agency_id, body.name, tuple(body.skills))
    given = Precondition(if_match, if_none_match)
    written = await directory(request).put_caregiver(row, lambda c: given.holds(c, _out))
    if written == "other_agency":
        raise Refused(409, "other_agency", f"{caregiver_id} is another agency's")
    if written == "precondition_failed":
        raise given.refuse("a caregiver")
    response.status_code = 201 if written == "created" else 200
    response.headers["ETag"] = etag(_out(row))
    return _out(row)


@router.post(
    "/{caregiver_id}/credentials",
    response_model=Credentials,
    summary="broker credentials for her phone, its own (a new password refuses the old)",
    responses={404: {"description": "no such caregiver"}, 409: {"description": "not our broker"}},
)
async def phone_credentials(
    request: Request, claims: Caller, agency_id: AgencyId, caregiver_id: CaregiverId
) -> Credentials:
    may_administer(claims, agency_id)
    if await directory(request).caregiver(agency_id, caregiver_id) is None:
        raise Refused(404, "unknown_caregiver", caregiver_id)
    given = await credentials_for(request.app.state.settings, agency_id, "cg", caregiver_id)
    if given is None:
        raise Refused(409, "external_broker", "credentials are provisioned at the broker")
    return given
