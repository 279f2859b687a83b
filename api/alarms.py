"""``/v1/agencies/{agency}/alarms``: an agency's alarms for its dispatchers, newest first a page
at a time (filtered by status, kind and patient), and one with its history: raised, repeated,
acknowledged, assigned, climbed a rung of its ladder, cleared, each with who did it and when.

Acknowledging, clearing, marking a false alarm and opening an incident from one are commands
(``api.commands``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.alarms import AlarmStore, StoredAlarm
from adapters.storage.postgres import EventRow
from alarms.lifecycle import Severity, Status
from api.auth import Caller, may_manage
from api.problems import Refused
from api.resources import ID, TEXT, After, AgencyId, Limit, Page, etag
from api.windows import after_cursor, cursor, iso

AlarmId = Annotated[str, Path(pattern=ID, description="the alarm's id")]

router = APIRouter(prefix="/v1/agencies/{agency_id}/alarms", tags=["alarms"])


class Alarm(BaseModel):
    id: str
    agency_id: str
    patient_id: str | None
    source: str = Field(description="what it is about: device:{id}, incident:{id}, patient:{id}")
    kind: str
    severity: Severity
    status: Status
    detail: str
    raised_at: datetime
    last_at: datetime
    count: int = Field(description="times raised while active")
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    assignee: str | None
    climbed: int = Field(description="rungs of its escalation ladder taken")


class Change(BaseModel):
    at: datetime
    kind: str = Field(description="alarm_raised, alarm_acknowledged, alarm_climbed, ...")
    actor: str
    detail: dict[str, Any]


class AlarmHistory(Alarm):
    history: list[Change] = Field(description="oldest first")


def store(request: Request) -> AlarmStore:
    return AlarmStore(request.app.state.db)


def _when(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else iso(epoch_s)


def _out(s: StoredAlarm) -> Alarm:
    a = s.alarm
    return Alarm(
        id=s.id,
        agency_id=s.agency_id,
        patient_id=s.patient_id,
        source=a.source,
        kind=a.kind,
        severity=a.severity,
        status=a.status,
        detail=s.detail,
        raised_at=iso(a.raised_at),
        last_at=iso(a.last_at),
        count=a.count,
        acknowledged_at=_when(a.acknowledged_at),
        acknowledged_by=a.acknowledged_by,
        cleared_at=_when(a.cleared_at),
        cleared_by=a.cleared_by,
        assignee=a.assignee,
        climbed=a.climbed,
    )


def _change(e: EventRow) -> Change:
    detail = {k: v for k, v in e.payload.items() if k not in ("alarm_id", "source", "kind")}
    return Change(at=iso(e.at), kind=e.kind, actor=e.actor, detail=detail)


@router.get("", summary="the agency's alarms, newest first, a page at a time")
async def list_alarms(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    status: Annotated[list[Status], Query(description="any of these statuses")] = [],  # noqa: B006
    kind: Annotated[
        str | None, Query(max_length=64, pattern=TEXT, description="of this kind")
    ] = None,
    patient_id: Annotated[str | None, Query(pattern=ID, description="hers alone")] = None,
    limit: Limit = 100,
    after: After = "",
) -> Page[Alarm]:
    may_manage(claims, agency_id)
    rows = await store(request).of_agency(
        agency_id,
        statuses=status,
        kind=kind,
        patient_id=patient_id,
        limit=limit + 1,
        before=after_cursor(after),
    )
    shown = rows[:limit]
    more = len(rows) > limit and shown
    return Page[Alarm](
        items=[_out(r) for r in shown],
        next=cursor(shown[-1].alarm.raised_at, shown[-1].id) if more else None,
    )


@router.get(
    "/{alarm_id}",
    response_model=AlarmHistory,
    summary="one alarm and its history",
    responses={404: {"description": "no such alarm of the agency"}},
)
async def get_alarm(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, alarm_id: AlarmId
) -> AlarmHistory:
    may_manage(claims, agency_id)
    found = await store(request).get(alarm_id)
    if found is None or found.agency_id != agency_id:
        raise Refused(404, "unknown_alarm", alarm_id)
    history = [_change(e) for e in await store(request).history(found)]
    out = AlarmHistory(**_out(found).model_dump(), history=history)
    response.headers["ETag"] = etag(out)
    return out
