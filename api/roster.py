"""``/v1/agencies/{agency}/caregivers/{id}/certificates`` and ``.../shifts``: what dispatch's
eligibility reads of a caregiver beside her skills (``adapters.storage.roster``).

A certificate is a kind (``first_aid``, ``manual_handling``...) and when it expires; ``PUT``
gives or renews it against the version read (``If-Match``; ``If-None-Match: *`` to give only),
``DELETE`` takes it away (against ``If-Match`` if one is given). A shift is a stretch of time she
is rostered to work: ``POST`` adds one and answers its id, ``DELETE`` removes it; its end comes
after its start, and it lasts at most a day. The agency's dispatchers manage both; the caregiver
reads her own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.schedule import CertificateRow, Schedule, ShiftRow
from api.auth import Caller, may_administer, may_manage, may_read_caregiver
from api.caregivers import CaregiverId
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
    versioned,
)
from api.windows import Moment

Kind = Annotated[str, Path(pattern=ID, description="the certificate's kind (first_aid...)")]
ShiftId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="the shift's id, as its creation answered")
]
SHIFT_MAX_S = 24 * 3600.0
WINDOW_DEFAULT_S = 7 * 24 * 3600.0

router = APIRouter(prefix="/v1/agencies/{agency_id}/caregivers/{caregiver_id}", tags=["roster"])


def schedule(request: Request) -> Schedule:
    return Schedule(request.app.state.db)


def when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class CertificateIn(BaseModel):
    expires_at: Moment = Field(description="ISO 8601 with its offset")


class Certificate(CertificateIn):
    caregiver_id: str
    kind: str


class Shift(BaseModel):
    id: str = Field(description="its id, to delete it by")
    caregiver_id: str
    starts_at: datetime
    ends_at: datetime


class ShiftIn(BaseModel):
    starts_at: Moment = Field(description="ISO 8601 with its offset")
    ends_at: Moment = Field(description="after starts_at, at most a day later")


def _certificate(row: CertificateRow) -> Certificate:
    return Certificate(
        caregiver_id=row.caregiver_id, kind=row.kind, expires_at=when(row.expires_at)
    )


def _shift(row: ShiftRow) -> Shift:
    return Shift(
        id=str(row.id),
        caregiver_id=row.caregiver_id,
        starts_at=when(row.starts_at),
        ends_at=when(row.ends_at),
    )


async def _known(request: Request, agency_id: str, caregiver_id: str) -> None:
    if not await schedule(request).caregiver_known(agency_id, caregiver_id):
        raise Refused(404, "unknown_caregiver", caregiver_id)


def bad_times(start: datetime, end: datetime, longest_s: float) -> Refused | None:
    """Why a stretch of time is refused (None: it is not): its end not after its start, or
    longer than ``longest_s``."""
    if end <= start:
        return Refused(422, "bad_times", "ends_at must come after starts_at")
    if (end - start).total_seconds() > longest_s:
        return Refused(422, "too_long", f"at most {longest_s / 3600:.0f} hours")
    return None


# ---------------------------------------------------------------- certificates


@router.get("/certificates", summary="her certificates, a page at a time in kind order")
async def list_certificates(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    limit: Limit = 100,
    after: After = "",
) -> Page[Certificate]:
    may_read_caregiver(claims, agency_id, caregiver_id)
    await _known(request, agency_id, caregiver_id)
    rows = await schedule(request).certificates(caregiver_id, limit + 1, after)
    items = [_certificate(r) for r in rows[:limit]]
    return Page[Certificate](items=items, next=items[-1].kind if len(rows) > limit else None)


@router.get(
    "/certificates/{kind}", response_model=Certificate, summary="one certificate, its version"
)
async def get_certificate(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    kind: Kind,
) -> Certificate:
    may_read_caregiver(claims, agency_id, caregiver_id)
    await _known(request, agency_id, caregiver_id)
    found = await schedule(request).certificate(caregiver_id, kind)
    return versioned(response, found, _certificate, "unknown_certificate", kind)


@router.put(
    "/certificates/{kind}",
    response_model=Certificate,
    summary="give her a certificate or renew it",
    responses={**WRITE_RESPONSES, 404: {"description": "not a caregiver of the agency"}},
)
async def put_certificate(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    kind: Kind,
    body: CertificateIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Certificate:
    may_administer(claims, agency_id)
    row = CertificateRow(caregiver_id, kind, body.expires_at.timestamp())
    given = Precondition(if_match, if_none_match)
    written = await schedule(request).put_certificate(
        agency_id, row, lambda c: given.holds(c, _certificate)
    )
    if written == "unknown_caregiver":
        raise Refused(404, "unknown_caregiver", caregiver_id)
    if written == "precondition_failed":
        raise given.refuse("a certificate")
    response.status_code = 201 if written == "created" else 200
    response.headers["ETag"] = etag(_certificate(row))
    return _certificate(row)


@router.delete(
    "/certificates/{kind}",
    status_code=204,
    summary="take a certificate away",
    responses={404: {"description": "no such certificate"}, 412: PRECONDITION_RESPONSES[412]},
)
async def delete_certificate(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    kind: Kind,
    if_match: IfMatch = None,
) -> Response:
    may_administer(claims, agency_id)
    given = Precondition(if_match, None)

    def holds(current: CertificateRow) -> bool:
        return if_match is None or given.holds(current, _certificate)

    removed = await schedule(request).delete_certificate(agency_id, caregiver_id, kind, holds)
    if removed == "unknown":
        raise Refused(404, "unknown_certificate", kind)
    if removed == "precondition_failed":
        raise given.refuse("a certificate")
    return Response(status_code=204)


# ---------------------------------------------------------------- shifts


@router.get("/shifts", summary="her shifts meeting a window of time, a page at a time")
async def list_shifts(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    start: Annotated[Moment | None, Query(alias="from", description="from (default: now)")] = None,
    end: Annotated[
        Moment | None, Query(alias="to", description="until (default: a week on)")
    ] = None,
    limit: Limit = 100,
    after: After = "",
) -> Page[Shift]:
    may_read_caregiver(claims, agency_id, caregiver_id)
    await _known(request, agency_id, caregiver_id)
    since = start.timestamp() if start is not None else datetime.now(UTC).timestamp()
    until = end.timestamp() if end is not None else since + WINDOW_DEFAULT_S
    if until <= since:
        raise Refused(422, "bad_times", "to must come after from")
    if after and not (after.isascii() and after.isdigit() and len(after) <= 18):  # a bigint
        raise Refused(400, "malformed", [{"at": ["query", "after"], "problem": "not a shift id"}])
    rows = await schedule(request).shifts(caregiver_id, since, until, limit + 1, int(after or 0))
    items = [_shift(r) for r in rows[:limit]]
    return Page[Shift](items=items, next=items[-1].id if len(rows) > limit else None)


@router.post(
    "/shifts",
    status_code=201,
    response_model=Shift,
    summary="roster her for a shift; its id in the answer",
    responses={
        404: {"description": "not a caregiver of the agency"},
        422: {"description": "its end not after its start, or longer than a day"},
    },
)
async def add_shift(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    body: ShiftIn,
) -> Shift:
    may_manage(claims, agency_id)
    refused = bad_times(body.starts_at, body.ends_at, SHIFT_MAX_S)
    if refused is not None:
        raise refused
    row = await schedule(request).add_shift(
        agency_id, caregiver_id, body.starts_at.timestamp(), body.ends_at.timestamp()
    )
    if row is None:
        raise Refused(404, "unknown_caregiver", caregiver_id)
    response.headers["Location"] = (
        f"/v1/agencies/{agency_id}/caregivers/{caregiver_id}/shifts/{row.id}"
    )
    return _shift(row)


@router.delete(
    "/shifts/{shift_id}",
    status_code=204,
    summary="take her off a shift",
    responses={404: {"description": "no such shift of hers"}},
)
async def delete_shift(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    shift_id: ShiftId,
) -> Response:
    may_manage(claims, agency_id)
    if not await schedule(request).delete_shift(agency_id, caregiver_id, shift_id):
        raise Refused(404, "unknown_shift", str(shift_id))
    return Response(status_code=204)
