"""An agency's visits as they went: ``.../visits/{id}/evidence`` one visit's state, its check-in
and check-out evidence (the fix that confirmed each, or a person's word, flagged for review)
and the alerts on it, to the agency's dispatchers and to the caregiver whose visit it is;
``.../visit-alerts`` the visit alerts newest first (open ones alone, or all);
``.../visit-report`` the visits report over a period, as JSON or CSV (``visits.report``, the
same as ``careknot report visits``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.agency_reads import AgencyReads
from adapters.storage.visit_store import StoredAlert, VisitStore
from api.auth import Caller, may_manage
from api.problems import Refused
from api.resources import ID, After, AgencyId, Limit, Page, etag
from api.windows import AnyMoment, iso, window
from kernel.tokens import Claims
from visits.report import render
from visits.rules import AlertKind, Evidence, EvidenceSource, VisitRecord, VisitState

VisitId = Annotated[str, Path(pattern=ID, description="the visit's id")]
REPORT_LONGEST_S = 93 * 86_400.0
"""The longest period one report covers: a quarter."""

router = APIRouter(prefix="/v1/agencies/{agency_id}", tags=["visits"])


class Proof(BaseModel):
    """How a check-in or check-out is known."""

    at: datetime = Field(description="when it began: the first fix inside (or outside)")
    source: EvidenceSource
    lat: float | None
    lon: float | None
    acc: float | None = Field(description="the fix's accuracy (m)")
    distance_m: float | None = Field(description="from the fix to the home")
    fix_at: datetime | None = Field(description="the fix that confirmed it, once dwelt")
    reason: str = Field(description="a manual one's reason")


class VisitEvidence(BaseModel):
    id: str
    agency_id: str
    patient_id: str
    caregiver_id: str
    service: str
    tasks: list[str]
    starts_at: datetime
    ends_at: datetime
    lat: float = Field(description="the home, where she checks in")
    lon: float
    state: VisitState
    check_in: Proof | None
    check_out: Proof | None
    eta_s: float | None
    alerts: list[AlertKind] = Field(description="the alerts on it now")
    needs_review: bool = Field(description="checked in or out by hand")


class VisitAlert(BaseModel):
    id: str
    kind: AlertKind
    patient_id: str
    caregiver_id: str
    visit_id: str | None
    raised_at: datetime
    cleared_at: datetime | None


def visit_store(request: Request) -> VisitStore:
    state = request.app.state
    store: VisitStore = state.redis.visit_store(state.db, state.settings)
    return store


def _proof(e: Evidence | None) -> Proof | None:
    if e is None:
        return None
    return Proof(
        at=iso(e.at),
        source=e.source,
        lat=e.lat,
        lon=e.lon,
        acc=e.acc,
        distance_m=e.distance_m,
        fix_at=None if e.fix_ts is None else iso(e.fix_ts),
        reason=e.reason,
    )


def _visit(r: VisitRecord) -> VisitEvidence:
    v = r.visit
    return VisitEvidence(
        id=v.visit_id,
        agency_id=v.agency_id,
        patient_id=v.patient_id,
        caregiver_id=v.caregiver_id,
        service=v.service,
        tasks=list(v.tasks),
        starts_at=iso(v.start),
        ends_at=iso(v.end),
        lat=v.lat,
        lon=v.lon,
        state=r.state,
        check_in=_proof(r.check_in),
        check_out=_proof(r.check_out),
        eta_s=r.eta_s,
        alerts=sorted(r.alerts),
        needs_review=r.needs_review,
    )


def _alert(a: StoredAlert) -> VisitAlert:
    return VisitAlert(
        id=str(a.seq),
        kind=a.kind,  # type: ignore[arg-type]
        patient_id=a.patient_id,
        caregiver_id=a.caregiver_id,
        visit_id=a.visit_id,
        raised_at=iso(a.raised_at),
        cleared_at=None if a.cleared_at is None else iso(a.cleared_at),
    )


def _may_read_visit(claims: Claims, agency_id: str, visit: VisitRecord | None) -> None:
    """A dispatcher of the agency, or the caregiver whose visit it is (a visit she may not
    read is refused whether or not it exists)."""
    if claims.role == "caregiver" and claims.agency == agency_id:
        if visit is None or visit.visit.caregiver_id != claims.sub:
            raise Refused(403, "forbidden", "a caregiver reads her own visits")
        return
    may_manage(claims, agency_id)


@router.get(
    "/visits/{visit_id}/evidence",
    response_model=VisitEvidence,
    summary="one visit as it went: its state, check-in and check-out evidence, alerts",
    responses={404: {"description": "no such visit of the agency"}},
)
async def visit_evidence(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, visit_id: VisitId
) -> VisitEvidence:
    found = await visit_store(request).record(visit_id)
    if found is not None and found.visit.agency_id != agency_id:
        found = None
    _may_read_visit(claims, agency_id, found)
    if found is None:
        raise Refused(404, "unknown_visit", visit_id)
    out = _visit(found)
    response.headers["ETag"] = etag(out)
    return out


@router.get("/visit-alerts", summary="the agency's visit alerts, newest first")
async def list_visit_alerts(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    open_only: Annotated[bool, Query(alias="open", description="those still open alone")] = True,
    limit: Limit = 100,
    after: After = "",
) -> Page[VisitAlert]:
    may_manage(claims, agency_id)
    if after and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise Refused(400, "bad_cursor", "pass the next of the page before")
    rows = await AgencyReads(request.app.state.db).visit_alerts(
        agency_id, open_only=open_only, limit=limit + 1, before=int(after) if after else None
    )
    shown = rows[:limit]
    more = len(rows) > limit and shown
    return Page[VisitAlert](
        items=[_alert(a) for a in shown], next=str(shown[-1].seq) if more else None
    )


@router.get(
    "/visit-report",
    summary="the visits report over a period: hours and punctuality by caregiver",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}},
        400: {"description": "a period that ends before it starts, or longer than 93 days"},
    },
)
async def visit_report(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    since: Annotated[AnyMoment, Query(description="visits starting from (ISO 8601)")],
    until: Annotated[AnyMoment, Query(description="until, not included")],
    form: Annotated[Literal["json", "csv"], Query(alias="format", description="json or csv")] = (
        "json"
    ),
) -> Response:
    may_manage(claims, agency_id)
    start, end = window(since, until, REPORT_LONGEST_S)
    assert start is not None and end is not None  # a window with a longest has both ends
    records = await visit_store(request).in_period(agency_id, start, end)
    meta = {"agency": agency_id, "from": iso(start).isoformat(), "to": iso(end).isoformat()}
    body = render(records, form, meta)
    if form == "csv":
        name = f'attachment; filename="visits-{agency_id}.csv"'
        return Response(body, media_type="text/csv", headers={"Content-Disposition": name})
    return Response(body, media_type="application/json")
