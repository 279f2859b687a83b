"""``/v1/agencies/{agency}/visits``: the roster of visits, each a caregiver sent to a patient's home
for a service and its tasks, from ``starts_at`` to ``ends_at``, and what the visit keeper has made
of it since (``state``: scheduled, en_route, arrived, in_visit, left or missed; when she checked
in and out).

``PUT`` creates a visit or changes it against the version read (``If-Match``; ``If-None-Match:
*`` to create only): the patient and the caregiver must be the agency's (422
``unknown_patient``, ``unknown_caregiver``), its end after its start and within a day of it
(422 ``bad_times``, ``too_long``). A visit under way keeps its patient, caregiver, start and
service (409 ``visit_begun``): its tasks and its end may still change; a visit over (left or
missed) does not change (409 ``visit_over``). ``DELETE`` cancels a visit not yet begun: it is
taken off the roster (409 ``visit_begun`` once under way: the keeper ends those, left or
missed). ``POST .../visits:import`` writes a week's roster from CSV, all of it or none
(:mod:`api.visit_import`). Lists are filtered by day (in a time zone), caregiver, patient and
state, a page at a time in id order. A caregiver reads her own visits (listing them with
``?caregiver_id=`` her id).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.postgres import known_zone
from adapters.storage.schedule import Batch, Schedule, VisitPlan, VisitRow
from api.auth import Caller, may_manage, may_read_caregiver
from api.problems import Refused
from api.resources import (
    ID,
    PRECONDITION_RESPONSES,
    TEXT,
    WRITE_RESPONSES,
    After,
    AgencyId,
    IfMatch,
    IfNoneMatch,
    Limit,
    Page,
    Precondition,
    etag,
)
from api.roster import bad_times, when
from api.visit_import import (
    MAX_BYTES,
    VISIT_MAX_S,
    BadRow,
    ImportRow,
    read_roster,
    refused_rows,
)
from api.windows import Day, Moment

VisitId = Annotated[str, Path(pattern=ID, description="the visit's id (the agency's own)")]
State = Literal["scheduled", "en_route", "arrived", "in_visit", "left", "missed"]
Task = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT)]
REFUSED: dict[str, tuple[int, str]] = {
    "other_agency": (409, "the id is another agency's"),
    "unknown_patient": (422, "not a patient of the agency"),
    "forgotten": (422, "the patient is forgotten"),
    "unknown_caregiver": (422, "not a caregiver of the agency"),
    "visit_begun": (409, "under way: only its tasks and its end may change"),
    "visit_over": (409, "over: it does not change"),
}

IMPORT_DESCRIPTION = """The columns are named on the first line, in any order: `visit_id`,
`patient_id`, `caregiver_id`, `starts_at`, `ends_at` (ISO 8601 with its offset), and optionally
`service`, `tasks` (separated by `;`) and `version`. Keyed by `visit_id`: a file sent twice is
written once.

Each row is written against the version of its visit the file was made from, as a single
visit's `PUT` is against its `If-Match`: a row that would change a visit on the roster gives the
visit's `version` as read (`GET .../visits`); without one the row is refused `version_required`,
and with one the visit has moved from since (another dispatcher's change, or the visit keeper's)
`changed`. A row of a visit not on the roster gives no version (`changed` with one: the visit it
was read from has been cancelled). A row that leaves its visit as it stands needs no version.

All or nothing: any bad row, and nothing of the file is written; the answer (422 `bad_rows`)
names each by its line, its visit id and its reason."""

router = APIRouter(prefix="/v1/agencies/{agency_id}/visits", tags=["visits"])
imports = APIRouter(prefix="/v1/agencies/{agency_id}", tags=["visits"])


class VisitIn(BaseModel):
    patient_id: str = Field(pattern=ID)
    caregiver_id: str = Field(pattern=ID)
    starts_at: Moment = Field(description="ISO 8601 with its offset")
    ends_at: Moment = Field(description="after starts_at, within a day of it")
    service: str = Field(default="home_care", min_length=1, max_length=64, pattern=TEXT)
    tasks: list[Task] = Field(default_factory=list, max_length=32)


class Visit(VisitIn):
    id: str
    agency_id: str
    state: State
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    version: int = Field(
        description="moves with every change, the keeper's too; never the same twice for a"
        " visit id (one cancelled and created again goes on after the cancelled one's)"
    )


class Imported(BaseModel):
    created: int
    changed: int
    unchanged: int


def schedule(request: Request) -> Schedule:
    return Schedule(request.app.state.db)


def _out(row: VisitRow) -> Visit:
    p = row.plan
    return Visit(
        id=p.id,
        agency_id=p.agency_id,
        patient_id=p.patient_id,
        caregiver_id=p.caregiver_id,
        starts_at=when(p.starts_at),
        ends_at=when(p.ends_at),
        service=p.service,
        tasks=list(p.tasks),
        state=row.state,  # type: ignore[arg-type]
        checked_in_at=None if row.checked_in_at is None else when(row.checked_in_at),
        checked_out_at=None if row.checked_out_at is None else when(row.checked_out_at),
        version=row.version,
    )


def _refusal(problem: str, what: str) -> Refused:
    status, said = REFUSED[problem]
    return Refused(status, problem, f"{what}: {said}")


@router.get("", summary="the agency's visits, filtered, a page at a time in id order")
async def list_visits(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    day: Annotated[Day | None, Query(description="visits starting on this day")] = None,
    zone: Annotated[str, Query(max_length=64, description="the day's time zone")] = "Europe/London",
    caregiver_id: Annotated[str | None, Query(pattern=ID)] = None,
    patient_id: Annotated[str | None, Query(pattern=ID)] = None,
    state: State | None = None,
    limit: Limit = 100,
    after: After = "",
) -> Page[Visit]:
    # the agency's roster is its dispatchers'; a caregiver lists her own, naming herself
    may_read_caregiver(claims, agency_id, caregiver_id or "")
    start = end = None
    if day is not None:
        if not known_zone(zone):
            raise Refused(422, "unknown_zone", zone)
        midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
        start = midnight.timestamp()
        end = (midnight + timedelta(days=1)).timestamp()  # wall-clock: a day of 23 or 25 hours
    rows = await schedule(request).visits(
        agency_id,
        start=start,
        end=end,
        caregiver_id=caregiver_id,
        patient_id=patient_id,
        state=state,
        limit=limit + 1,
        after=after,
    )
    items = [_out(r) for r in rows[:limit]]
    return Page[Visit](items=items, next=items[-1].id if len(rows) > limit else None)


@router.get("/{visit_id}", response_model=Visit, summary="one visit, its version")
async def get_visit(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, visit_id: VisitId
) -> Visit:
    found = await schedule(request).visit(agency_id, visit_id)
    if claims.role == "caregiver" and found is not None:
        may_read_caregiver(claims, agency_id, found.plan.caregiver_id)
    else:
        may_manage(claims, agency_id)
    if found is None:
        raise Refused(404, "unknown_visit", visit_id)
    out = _out(found)
    response.headers["ETag"] = etag(out)
    return out


@router.put(
    "/{visit_id}",
    response_model=Visit,
    summary="put a visit on the roster, or change it",
    responses={
        **WRITE_RESPONSES,
        409: {"description": "another agency's id, or a visit begun or over"},
        422: {"description": "an unknown patient or caregiver, or bad times"},
    },
)
async def put_visit(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    visit_id: VisitId,
    body: VisitIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Visit:
    may_manage(claims, agency_id)
    refused = bad_times(body.starts_at, body.ends_at, VISIT_MAX_S)
    if refused is not None:
        raise refused
    plan = VisitPlan(
        visit_id,
        agency_id,
        body.patient_id,
        body.caregiver_id,
        body.starts_at.timestamp(),
        body.ends_at.timestamp(),
        body.service,
        tuple(body.tasks),
    )
    given = Precondition(if_match, if_none_match)
    store = schedule(request)
    done = await store.write_visits(agency_id, [plan], lambda _, c: given.holds(c, _out))
    if done.bad:
        problem = done.bad[0][1]
        if problem == "precondition_failed":
            raise given.refuse("a visit")
        raise _refusal(problem, visit_id)
    written = await store.visit(agency_id, visit_id)
    if written is None:  # cancelled since, by another dispatcher
        raise given.refuse("a visit")
    out = _out(written)
    response.status_code = 201 if done.created else 200
    response.headers["ETag"] = etag(out)
    return out


@router.delete(
    "/{visit_id}",
    status_code=204,
    summary="cancel a visit not yet begun (taken off the roster)",
    responses={
        404: {"description": "no such visit"},
        409: {"description": "begun already"},
        **PRECONDITION_RESPONSES,
    },
)
async def cancel_visit(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    visit_id: VisitId,
    if_match: IfMatch = None,
) -> Response:
    may_manage(claims, agency_id)
    given = Precondition(if_match, None)
    removed = await schedule(request).cancel_visit(
        agency_id, visit_id, lambda c: given.holds(c, _out)
    )
    if removed == "unknown":
        raise Refused(404, "unknown_visit", visit_id)
    if removed == "precondition_failed":
        raise given.refuse("a visit")
    if removed == "visit_begun":
        raise _refusal("visit_begun", visit_id)
    return Response(status_code=204)


@imports.post(
    "/visits:import",
    response_model=Imported,
    summary="write a week's roster from CSV: every row, or none",
    description=IMPORT_DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
    responses={
        413: {"description": "over 2 MiB or 5,000 rows"},
        415: {"description": "not text/csv"},
        422: {
            "description": "bad rows: each one's line and why, a version that did not hold"
            " among them (nothing written)"
        },
    },
)
async def import_visits(request: Request, claims: Caller, agency_id: AgencyId) -> Imported:
    may_manage(claims, agency_id)
    rows = read_roster(agency_id, await _csv_body(request))
    good = [r for r in rows if isinstance(r, ImportRow)]
    bad = [r for r in rows if isinstance(r, BadRow)]
    # the rows that read well are judged against the roster even when others did not, so the
    # answer names every bad row at once
    by_id = {r.plan.id: r for r in good}
    done: Batch = await schedule(request).write_visits(
        agency_id,
        [r.plan for r in good],
        lambda plan, found: by_id[plan.id].holds(found),
        judge_only=bool(bad),
    )
    bad += [_bad(good[n], problem) for n, problem in done.bad]
    if bad:
        raise refused_rows(sorted(bad, key=lambda b: b.line))
    return Imported(created=done.created, changed=done.changed, unchanged=done.unchanged)


def _bad(row: ImportRow, problem: str) -> BadRow:
    """A row the roster refused: a version that did not hold is said as the row's conflict."""
    reason = row.conflict() if problem == "precondition_failed" else problem
    return BadRow(row.line, row.plan.id, reason)


async def _csv_body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "text/csv":
        raise Refused(415, "unsupported_media_type", "the roster comes as text/csv")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise Refused(413, "too_large", f"at most {MAX_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BYTES:
            raise Refused(413, "too_large", f"at most {MAX_BYTES} bytes")
    return bytes(body)
