"""``/v1/agencies/{agency}``: the agency itself, its name; and the check every route under it
makes first, that the agency is registered.

An agency starts from nothing with an admin's access token for its id, minted by whoever runs
the system (``careknot token --role admin --agency ID``, which holds the signing key): the admin
registers it (``PUT``, creating it once), then its people, homes, devices and roster. A route
under an agency not registered yet answers 404 ``unknown_agency`` to a caller of that agency
(to anyone else it is refused as any other agency's is, so an agency's existence is not told
to outsiders); an agency once registered is never removed, so the answer is kept in-process.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.directory import AgencyRow
from api.auth import Caller, may_administer, may_manage
from api.problems import Refused
from api.resources import (
    TEXT,
    WRITE_RESPONSES,
    AgencyId,
    IfMatch,
    IfNoneMatch,
    Precondition,
    directory,
    etag,
    versioned,
)

router = APIRouter(prefix="/v1/agencies", tags=["agencies"])


class AgencyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=TEXT)


class Agency(AgencyIn):
    id: str


def _out(row: AgencyRow) -> Agency:
    return Agency(id=row.id, name=row.name)


async def known_agency(request: Request, claims: Caller, agency_id: AgencyId) -> None:
    """A route's agency registered, or 404 ``unknown_agency`` to one of its own callers."""
    if claims.agency != agency_id:
        return  # the route refuses another agency's caller as it would anyway
    known: set[str] = request.app.state.agencies_known
    if agency_id in known:
        return
    if not await directory(request).agency_known(agency_id):
        raise Refused(404, "unknown_agency", f"register it first: PUT /v1/agencies/{agency_id}")
    known.add(agency_id)


@router.get("/{agency_id}", response_model=Agency, summary="the agency, its version")
async def get_agency(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId
) -> Agency:
    may_manage(claims, agency_id)
    found = await directory(request).agency(agency_id)
    return versioned(response, found, _out, "unknown_agency", agency_id)


@router.put(
    "/{agency_id}",
    response_model=Agency,
    summary="register the agency, or rename it",
    responses={k: v for k, v in WRITE_RESPONSES.items() if k != 409},
)
async def put_agency(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    body: AgencyIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Agency:
    may_administer(claims, agency_id)
    row = AgencyRow(agency_id, body.name)
    given = Precondition(if_match, if_none_match)
    written = await directory(request).put_agency(row, lambda c: given.holds(c, _out))
    if written == "precondition_failed":
        raise given.refuse("an agency")
    request.app.state.agencies_known.add(agency_id)
    response.status_code = 201 if written == "created" else 200
    response.headers["ETag"] = etag(_out(row))
    return _out(row)
