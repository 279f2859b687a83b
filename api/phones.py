"""``/v1/agencies/{agency}/owntracks``: the agency's OwnTracks phones, each ``{user}/{device}``
as the OwnTracks app names its topic (``owntracks/{user}/{device}``), mapped to a caregiver.

Where the system runs its own broker, an OwnTracks user is a client of her own there (her user
name, as the app puts it in its topics) whose role lets her publish under ``owntracks/{user}/``
alone and read only her phones' commands. Her password is given once, in the answer that
registers her first phone (``credentials``); a second phone of hers shares it (the broker knows
the user, not the phone). ``POST .../credentials`` gives her a new password (every phone of hers
then needs it); decommissioning her last phone withdraws her client. Ingest tells which of her
phones is whose caregiver (its registry, a minute's cache).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.phones import PhoneRow, Phones
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
    etag,
    page,
    versioned,
)
from kernel.contracts import OWNTRACKS_NAME

User = Annotated[str, Path(pattern=f"^{OWNTRACKS_NAME}$", description="her OwnTracks user name")]
Device = Annotated[str, Path(pattern=f"^{OWNTRACKS_NAME}$", description="the phone's device id")]

router = APIRouter(prefix="/v1/agencies/{agency_id}/owntracks", tags=["owntracks phones"])


class PhoneIn(BaseModel):
    caregiver_id: str = Field(pattern=ID, description="whose phone it is")


class Phone(PhoneIn):
    id: str = Field(description="{user}/{device}")
    user: str
    device: str
    agency_id: str
    topic: str = Field(description="where the app publishes its fixes")


class RegisteredPhone(Phone):
    credentials: Credentials | None = Field(
        default=None, description="on her first phone, where the system runs its own broker"
    )


def _out(row: PhoneRow) -> Phone:
    return Phone(
        id=row.id,
        user=row.user,
        device=row.device,
        caregiver_id=row.caregiver_id,
        agency_id=row.agency_id,
        topic=f"owntracks/{row.user}/{row.device}",
    )


def phones(request: Request) -> Phones:
    return Phones(request.app.state.db)


@router.get("", summary="the agency's OwnTracks phones, a page at a time")
async def list_phones(
    request: Request, claims: Caller, agency_id: AgencyId, limit: Limit = 100, after: After = ""
) -> Page[Phone]:
    may_manage(claims, agency_id)
    return page(await phones(request).page(agency_id, limit + 1, after), limit, _out)


@router.get("/{user}/{device}", response_model=Phone, summary="one phone, its version")
async def get_phone(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, user: User,
    device: Device,
) -> Phone:  # fmt: skip
    may_manage(claims, agency_id)
    found = await phones(request).one(agency_id, user, device)
    return versioned(response, found, _out, "unknown_phone", f"{user}/{device}")


@router.put(
    "/{user}/{device}",
    response_model=RegisteredPhone,
    response_model_exclude_none=True,
    summary="register a phone to a caregiver (her broker credentials, once) or give it to another",
    responses={
        **WRITE_RESPONSES,
        409: {"description": "the user is another agency's or caregiver's, or the broker's"},
        422: {"description": "not a caregiver of the agency"},
    },
)
async def put_phone(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, user: User,
    device: Device, body: PhoneIn, if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> RegisteredPhone:  # fmt: skip
    may_administer(claims, agency_id)
    row = PhoneRow(user, device, body.caregiver_id, agency_id)
    given = Precondition(if_match, if_none_match)
    first = await phones(request).others_of(user, device) == 0
    written = await phones(request).put(row, lambda c: given.holds(c, _out))
    if written == "unknown_caregiver":
        raise Refused(422, written, body.caregiver_id)
    if written in ("other_agency", "another_caregivers_user"):
        raise Refused(409, written, f"the OwnTracks user {user} is another's")
    if written == "precondition_failed":
        raise given.refuse("a phone")
    created = written == "created"
    credentials = None
    if created and first:
        credentials = await credentials_for(request.app.state.settings, agency_id, "ot", user)
    response.status_code = 201 if created else 200
    response.headers["ETag"] = etag(_out(row))
    return RegisteredPhone(**_out(row).model_dump(), credentials=credentials)


@router.delete(
    "/{user}/{device}",
    status_code=204,
    summary="decommission a phone (her last: her broker client withdrawn)",
    responses={
        404: {"description": "no such phone"},
        **PRECONDITION_RESPONSES,
    },
)
async def delete_phone(
    request: Request, claims: Caller, agency_id: AgencyId, user: User, device: Device,
    if_match: IfMatch = None,
) -> Response:  # fmt: skip
    """Her client is withdrawn first when it is her last phone, so a broker away leaves the
    phone registered and the call can be made again."""
    may_administer(claims, agency_id)
    given = Precondition(if_match, None)
    found = await phones(request).one(agency_id, user, device)
    if found is None:
        raise Refused(404, "unknown_phone", f"{user}/{device}")
    if not given.holds(found, _out):
        raise given.refuse("a phone")
    if await phones(request).others_of(user, device) == 0:
        await withdraw(request.app.state.settings, agency_id, "ot", user)
    if not await phones(request).delete(agency_id, user, device, lambda c: given.holds(c, _out)):
        raise given.refuse("a phone")
    return Response(status_code=204)


@router.post(
    "/{user}/{device}/credentials",
    response_model=Credentials,
    summary="a new broker password for her (every phone of hers then needs it)",
    responses={404: {"description": "no such phone"}, 409: {"description": "not our broker"}},
)
async def new_credentials(
    request: Request, claims: Caller, agency_id: AgencyId, user: User, device: Device
) -> Credentials:
    may_administer(claims, agency_id)
    if await phones(request).one(agency_id, user, device) is None:
        raise Refused(404, "unknown_phone", f"{user}/{device}")
    credentials = await credentials_for(request.app.state.settings, agency_id, "ot", user)
    if credentials is None:
        raise Refused(409, "external_broker", "credentials are provisioned at the broker")
    return credentials
