"""``/v1/agencies/{agency}/patients/{patient}/medication``: a patient's medication schedule (her
doses, each a time of day in her home's time zone, a window, and whether missing it is critical),
and what became of each dose of a day.

The schedule is replaced whole against its version (``If-Match``; ``If-None-Match: *`` or none
at all for her first). It stands from the moment it is written: a dose due before then is not
its own, and the devices worker takes it within ``medication_schedules_read_s``. A dispatcher
or an admin of her agency writes and reads it; the day's doses her family reads too.
"""

from __future__ import annotations

import time as clock
from datetime import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import PatientRow
from api.auth import Caller, may_manage, may_read_relative
from api.problems import Refused
from api.resources import (
    ID,
    PRECONDITION_RESPONSES,
    TEXT,
    AgencyId,
    IfMatch,
    IfNoneMatch,
    Precondition,
    directory,
    etag,
)
from api.windows import Day
from medication.doses import HALF, HERO_WINDOW_S, Schedule, ScheduledDose

PatientId = Annotated[str, Path(pattern=ID, description="the patient's id")]
DAY_S = 86_400.0
MOST_DOSES = 24

router = APIRouter(prefix="/v1/agencies/{agency_id}/patients", tags=["medication"])


class DoseIn(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=TEXT,
        description="what she takes, as the plan names it",
    )
    at: time = Field(description="the time of day it is due, in her home's time zone (HH:MM)")
    window_s: float = Field(
        default=HERO_WINDOW_S, gt=0, le=12 * 3600, description="how long after it may be taken"
    )
    critical: bool = Field(default=False, description="missing it raises a critical alarm")


class ScheduleIn(BaseModel):
    doses: list[DoseIn] = Field(max_length=MOST_DOSES)
    call_at_fraction: float = Field(
        default=HALF, gt=0, le=1, description="of a dose's window, when an untaken dose is called"
    )
    on_time_s: float = Field(default=300.0, ge=0, le=DAY_S, description="taken within: on time")

    @field_validator("doses")
    @classmethod
    def _one_dose_of_a_name_at_a_time(cls, doses: list[DoseIn]) -> list[DoseIn]:
        seen = [(d.name, d.at) for d in doses]
        if len(set(seen)) != len(seen):
            raise ValueError("a dose is named once at a time of day")
        return doses


class MedicationSchedule(ScheduleIn):
    patient_id: str
    zone: str = Field(description="her home's time zone: the doses' times are in it")


class DayDoseOut(BaseModel):
    dose_key: str
    name: str
    due_at: float
    critical: bool
    outcome: str = Field(
        description="taken, late, missed, administered, refused, unavailable or pending"
    )
    at: float | None
    caregiver_id: str | None
    visit_id: str | None


def _out(patient: PatientRow, schedule: Schedule | None) -> MedicationSchedule:
    if schedule is None:
        return MedicationSchedule(patient_id=patient.id, zone=patient.zone, doses=[])
    return MedicationSchedule(
        patient_id=patient.id,
        zone=schedule.zone,
        doses=[DoseIn(name=d.name, at=d.at, window_s=d.window_s, critical=d.critical)
               for d in schedule.doses],
        call_at_fraction=schedule.call_at_fraction,
        on_time_s=schedule.on_time_s,
    )  # fmt: skip


async def _patient(request: Request, agency_id: str, patient_id: str) -> PatientRow:
    found = await directory(request).patient(agency_id, patient_id)
    if found is None:
        raise Refused(404, "unknown_patient", patient_id)
    return found


@router.get(
    "/{patient_id}/medication",
    response_model=MedicationSchedule,
    summary="her medication schedule, its version (no doses: none set)",
)
async def get_schedule(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, patient_id: PatientId
) -> MedicationSchedule:
    may_manage(claims, agency_id)
    patient = await _patient(request, agency_id, patient_id)
    shown = _out(patient, await MedicationStore(request.app.state.db).schedule(patient_id))
    response.headers["ETag"] = etag(shown)
    return shown


@router.put(
    "/{patient_id}/medication",
    response_model=MedicationSchedule,
    summary="set or replace her medication schedule",
    responses={
        404: {"description": "no such patient of the agency"},
        **PRECONDITION_RESPONSES,
    },
)
async def put_schedule(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    patient_id: PatientId,
    body: ScheduleIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> MedicationSchedule:
    may_manage(claims, agency_id)
    patient = await _patient(request, agency_id, patient_id)
    schedule = Schedule(
        patient_id,
        tuple(ScheduledDose(d.name, d.at, d.window_s, d.critical) for d in body.doses),
        zone=patient.zone,
        call_at_fraction=body.call_at_fraction,
        on_time_s=body.on_time_s,
    )
    given = Precondition(if_match, if_none_match)
    none_set = Schedule(patient_id, (), zone=patient.zone)  # read as no doses, its version too

    def holds(current: Schedule | None) -> bool:
        if current is None and if_match is not None:
            current = none_set
        return given.holds(current, lambda s: _out(patient, s))

    written = await MedicationStore(request.app.state.db).replace_schedule(
        schedule, clock.time(), holds
    )
    if not written:
        raise given.refuse("a medication schedule")
    shown = _out(patient, schedule)
    response.headers["ETag"] = etag(shown)
    return shown


@router.get(
    "/{patient_id}/medication/day",
    response_model=list[DayDoseOut],
    summary="each dose of a day (in her time zone) and what became of it",
)
async def doses_of_day(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    patient_id: PatientId,
    day: Annotated[Day, Query(description="YYYY-MM-DD, in her home's time zone")],
) -> list[DayDoseOut]:
    may_read_relative(claims, agency_id, patient_id)
    await _patient(request, agency_id, patient_id)
    doses = await MedicationStore(request.app.state.db).doses_of_day(patient_id, day)
    return [
        DayDoseOut(
            dose_key=d.dose_key, name=d.name, due_at=d.due_at, critical=d.critical,
            outcome=d.outcome, at=d.at, caregiver_id=d.caregiver_id, visit_id=d.visit_id,
        )
        for d in doses
    ]  # fmt: skip
