"""``/v1/agencies/{agency}/incidents``: an agency's incidents for its dispatchers, newest first a
page at a time (filtered by state, by the time they were opened and by patient), and one with
its timeline: every step the event log kept of it (opened, triggers joined, offers sent and
answered, assigned, escalated, resolved), who took it and when.

Assigning and resolving one are commands (``api.commands``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.agency_reads import AgencyReads, IncidentRecord
from adapters.storage.postgres import EventRow
from api.auth import Caller, may_manage
from api.problems import Refused
from api.resources import ID, After, AgencyId, Limit, Page, etag
from api.windows import Since, Until, after_cursor, cursor, iso, window

IncidentId = Annotated[str, Path(pattern=ID, description="the incident's id")]
IncidentState = Literal["open", "offered", "assigned", "escalated", "resolved"]

router = APIRouter(prefix="/v1/agencies/{agency_id}/incidents", tags=["incidents"])


class Incident(BaseModel):
    id: str
    agency_id: str
    patient_id: str
    device_id: str | None = Field(description="the device whose event opened it, if one did")
    kind: str = Field(description="what opened it (fall, sos...)")
    severity: int = Field(description="1 is the gravest")
    state: IncidentState
    assignee_id: str | None
    wave: int = Field(description="waves of offers sent so far")
    opened_at: datetime
    updated_at: datetime


class Step(BaseModel):
    at: datetime
    kind: str = Field(description="incident_opened, offer_sent, offer_accepted, ...")
    actor: str = Field(description="who did it: a device, the dispatcher, a caregiver, a person")
    detail: dict[str, Any]


class IncidentTimeline(Incident):
    timeline: list[Step] = Field(description="oldest first")


def reads(request: Request) -> AgencyReads:
    return AgencyReads(request.app.state.db)


def _out(r: IncidentRecord) -> Incident:
    return Incident(
        id=r.id,
        agency_id=r.agency_id,
        patient_id=r.patient_id,
        device_id=r.device_id,
        kind=r.kind,
        severity=r.severity,
        state=r.state,  # type: ignore[arg-type]
        assignee_id=r.assignee_id,
        wave=r.wave,
        opened_at=iso(r.opened_at),
        updated_at=iso(r.updated_at),
    )


def _step(e: EventRow) -> Step:
    return Step(at=iso(e.at), kind=e.kind, actor=e.actor, detail=e.payload)


@router.get("", summary="the agency's incidents, newest first, a page at a time")
async def list_incidents(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    state: Annotated[list[IncidentState], Query(description="any of these states")] = [],  # noqa: B006
    since: Since = None,
    until: Until = None,
    patient_id: Annotated[str | None, Query(pattern=ID, description="hers alone")] = None,
    limit: Limit = 100,
    after: After = "",
) -> Page[Incident]:
    may_manage(claims, agency_id)
    start, end = window(since, until)
    rows = await reads(request).incidents(
        agency_id,
        states=state,
        since=start,
        until=end,
        patient_id=patient_id,
        limit=limit + 1,
        before=after_cursor(after),
    )
    shown = rows[:limit]
    more = len(rows) > limit and shown
    return Page[Incident](
        items=[_out(r) for r in shown],
        next=cursor(shown[-1].opened_at, shown[-1].id) if more else None,
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentTimeline,
    summary="one incident and its timeline",
    responses={404: {"description": "no such incident of the agency"}},
)
async def get_incident(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    incident_id: IncidentId,
) -> IncidentTimeline:
    may_manage(claims, agency_id)
    found = await reads(request).incident(agency_id, incident_id)
    if found is None:
        raise Refused(404, "unknown_incident", incident_id)
    steps = [_step(e) for e in await reads(request).timeline(found)]
    out = IncidentTimeline(**_out(found).model_dump(), timeline=steps)
    response.headers["ETag"] = etag(out)
    return out
