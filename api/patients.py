"""``/v1/agencies/{agency}/patients``: an agency's patients, each her home's place and time zone,
and her details (address, how to get in, notes, family to call).
Her name and her details are sealed in the record (``kernel.sealing``) and shown unsealed to her
agency's dispatchers, each read kept in the access log (``via: api``, ``what: read``); a patient
forgotten (``careknot patient forget``) reads ``(forgotten)``, her details gone, and is not
written again. Versions and preconditions as every resource (``api.resources``)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.access_log import AccessLog
from adapters.storage.postgres import PatientRow
from api.auth import Caller, may_administer, may_manage
from api.problems import Refused
from api.resources import (
    ID,
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
from kernel.contracts import AccessRecord, PatientDetails
from kernel.tokens import Claims

PatientId = Annotated[str, Path(pattern=ID, description="the patient's id")]

router = APIRouter(prefix="/v1/agencies/{agency_id}/patients", tags=["patients"])


class PatientIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="sealed in the record")
    lat: float = Field(ge=-90, le=90, description="her home, where caregivers are sent")
    lon: float = Field(ge=-180, le=180)
    zone: str = Field(default="Europe/London", max_length=64, description="IANA time zone")
    details: PatientDetails = Field(default_factory=PatientDetails, description="sealed")


class Patient(PatientIn):
    id: str
    agency_id: str
    forgotten: bool = False


def _out(row: PatientRow) -> Patient:
    return Patient(
        id=row.id,
        agency_id=row.agency_id,
        name=row.name,
        lat=row.lat,
        lon=row.lon,
        zone=row.zone,
        forgotten=row.forgotten,
        details=row.details or PatientDetails(),
    )


async def _read(request: Request, claims: Claims, rows: list[PatientRow]) -> None:
    """Who read these patients' records, kept before they are shown."""
    now = time.time()
    records = [
        AccessRecord(
            record_id=uuid.uuid4().hex,
            agency_id=r.agency_id,
            role=claims.role,
            subject=claims.sub,
            recipient=f"agency:{r.agency_id}",
            patient_id=r.id,
            via="api",
            what="read",
            at=now,
        )
        for r in rows
    ]
    await AccessLog(request.app.state.db).keep(records)


@router.get("", summary="the agency's patients, a page at a time")
async def list_patients(
    request: Request, claims: Caller, agency_id: AgencyId, limit: Limit = 100, after: After = ""
) -> Page[Patient]:
    may_manage(claims, agency_id)
    rows = await directory(request).patients(agency_id, limit + 1, after)
    await _read(request, claims, rows[:limit])
    return page(rows, limit, _out)


@router.get("/{patient_id}", response_model=Patient, summary="one patient, her version")
async def get_patient(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, patient_id: PatientId
) -> Patient:
    may_manage(claims, agency_id)
    found = await directory(request).patient(agency_id, patient_id)
    if found is not None:
        await _read(request, claims, [found])
    return versioned(response, found, _out, "unknown_patient", patient_id)


@router.put(
    "/{patient_id}",
    response_model=Patient,
    summary="register a patient or change her record",
    responses={**WRITE_RESPONSES, 422: {"description": "an unknown time zone, or forgotten"}},
)
async def put_patient(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    patient_id: PatientId,
    body: PatientIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Patient:
    may_administer(claims, agency_id)
    row = PatientRow(
        patient_id, agency_id, body.name, body.lat, body.lon, body.zone, details=body.details
    )
    given = Precondition(if_match, if_none_match)
    written = await directory(request).put_patient(row, lambda c: given.holds(c, _out))
    if written == "other_agency":
        raise Refused(409, "other_agency", f"{patient_id} is another agency's")
    if written in ("unknown_zone", "forgotten"):
        raise Refused(422, written, body.zone if written == "unknown_zone" else patient_id)
    if written == "precondition_failed":
        raise given.refuse("a patient")
    response.status_code = 201 if written == "created" else 200
    response.headers["ETag"] = etag(_out(row))
    return _out(row)
