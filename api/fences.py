"""``/v1/agencies/{agency}/patients/{id}/fence``: the fence of a patient's home, where a
caregiver is taken to have arrived (``geofence.fences``). A patient without a fence of her own has
the default circle about her home (``own`` false); ``PUT`` gives her home a radius of its own or
a GeoJSON polygon (lon/lat, RFC 7946), against the version read (``If-Match``) once she has one.

A polygon is refused (422, its reason) unless it is a valid ``Polygon`` or ``MultiPolygon``:
closed rings, not self-intersecting, of a sane size (at least ``MIN_AREA_M2``, within
``geofence.fences.MAX_EXTENT_M`` of its centre, at most ``MAX_VERTICES`` positions) and about her
home (its centre within ``MAX_EXTENT_M`` of it). Refusals name the rule broken, never a
position. A polygon is kept as its type and positions alone: another member it carries is not.
The visit workers' fence caches are told at once, so arrivals are judged against the new fence
from their next batch.
"""

from __future__ import annotations

from typing import Any, Self

import shapely
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, model_validator

from adapters.storage.schedule import FenceRow, Schedule
from api.auth import Caller, may_manage
from api.patients import PatientId
from api.problems import Refused
from api.resources import (
    WRITE_RESPONSES,
    AgencyId,
    IfMatch,
    IfNoneMatch,
    Precondition,
    directory,
    etag,
)
from geofence.fences import DEFAULT_RADIUS_M, MAX_EXTENT_M, Fence, InvalidFence
from geofence.geodesy import haversine_m

MIN_AREA_M2 = 10.0
MAX_VERTICES = 1_000
_SAID = {
    "fence_bad_geojson": "a GeoJSON Polygon or MultiPolygon of closed rings of [lon, lat]",
    "fence_bad_radius": f"a radius in (0, {MAX_EXTENT_M:.0f}] m",
}

router = APIRouter(prefix="/v1/agencies/{agency_id}/patients/{patient_id}/fence", tags=["fences"])


class FenceIn(BaseModel):
    radius_m: float | None = Field(
        default=None, gt=0, le=MAX_EXTENT_M, description="a circle about her home, in metres"
    )
    polygon: dict[str, Any] | None = Field(
        default=None, description="a GeoJSON Polygon or MultiPolygon (lon/lat)"
    )

    @model_validator(mode="after")
    def one_of_them(self) -> Self:
        if (self.radius_m is None) == (self.polygon is None):
            raise ValueError("give radius_m or polygon, one of them")
        return self


class HomeFence(BaseModel):
    patient_id: str
    radius_m: float | None = Field(description="the circle's radius (null: a polygon)")
    polygon: dict[str, Any] | None
    own: bool = Field(description="false: the default circle about her home")


def _out(patient_id: str, row: FenceRow | None) -> HomeFence:
    if row is None:
        return HomeFence(patient_id=patient_id, radius_m=DEFAULT_RADIUS_M, polygon=None, own=False)
    return HomeFence(patient_id=patient_id, radius_m=row.radius_m, polygon=row.geojson, own=True)


def _checked(patient_id: str, agency_id: str, lat: float, lon: float, body: FenceIn) -> None:
    """Raise the refusal of a fence that may not be her home's."""
    try:
        if body.polygon is None:
            Fence.circle(patient_id, patient_id, agency_id, lat, lon, body.radius_m or 0.0)
            return
        fence = Fence.polygon(patient_id, patient_id, agency_id, body.polygon)
    except InvalidFence as exc:
        raise Refused(422, exc.reason, _SAID.get(exc.reason, _without_positions(exc))) from exc
    assert fence.geometry is not None and fence.local is not None
    if shapely.get_num_coordinates(fence.geometry) > MAX_VERTICES:
        raise Refused(422, "fence_too_detailed", f"at most {MAX_VERTICES} positions")
    if fence.local.area < MIN_AREA_M2:
        raise Refused(422, "fence_too_small", f"at least {MIN_AREA_M2:.0f} square metres")
    if haversine_m(lat, lon, fence.lat, fence.lon) > MAX_EXTENT_M:
        raise Refused(422, "fence_far_from_home", f"its centre over {MAX_EXTENT_M:.0f} m away")


def _geometry(polygon: dict[str, Any] | None) -> dict[str, Any] | None:
    """The polygon as kept: its type and positions, checked, and none of the other members a
    GeoJSON object may carry (text that may not be JSON Postgres holds, a NUL among it)."""
    if polygon is None:
        return None
    return {"type": polygon["type"], "coordinates": polygon["coordinates"]}


def _without_positions(exc: InvalidFence) -> str:
    """What a refusal says of a fence, cut before any position it quotes (a home's place)."""
    detail = str(exc).removeprefix(f"{exc.reason}: ")
    return detail.split("[", 1)[0].split(":", 1)[0].strip()


@router.get("", response_model=HomeFence, summary="her home's fence, its version")
async def get_fence(
    request: Request, response: Response, claims: Caller, agency_id: AgencyId, patient_id: PatientId
) -> HomeFence:
    may_manage(claims, agency_id)
    if await directory(request).patient(agency_id, patient_id) is None:
        raise Refused(404, "unknown_patient", patient_id)
    out = _out(patient_id, await Schedule(request.app.state.db).fence(patient_id))
    response.headers["ETag"] = etag(out)
    return out


@router.put(
    "",
    response_model=HomeFence,
    summary="give her home a fence of its own: a radius or a polygon",
    responses={
        **WRITE_RESPONSES,
        404: {"description": "not a patient of the agency"},
        422: {"description": "a polygon that may not be a home's fence (its reason)"},
    },
)
async def put_fence(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    patient_id: PatientId,
    body: FenceIn,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> HomeFence:
    may_manage(claims, agency_id)
    patient = await directory(request).patient(agency_id, patient_id)
    if patient is None or patient.forgotten:
        raise Refused(404, "unknown_patient", patient_id)
    _checked(patient_id, agency_id, patient.lat, patient.lon, body)
    row = FenceRow(patient_id, body.radius_m, _geometry(body.polygon))
    given = Precondition(if_match, if_none_match)

    def holds(current: FenceRow | None) -> bool:
        # the default circle has a version too: a change made on it holds while she has none
        judged = None if current is None and if_match is None else _out(patient_id, current)
        return given.holds(judged, lambda shown: shown)

    db = request.app.state.db
    written = await Schedule(db).put_fence(agency_id, row, holds)
    if written == "unknown_patient":
        raise Refused(404, "unknown_patient", patient_id)
    if written == "precondition_failed":
        raise given.refuse("a fence")
    await request.app.state.redis.visit_store(db, request.app.state.settings).fences_changed()
    response.status_code = 201 if written == "created" else 200
    response.headers["ETag"] = etag(_out(patient_id, row))
    return _out(patient_id, row)
