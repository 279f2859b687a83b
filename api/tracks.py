"""``.../caregivers/{id}/track``: where a caregiver was over a window, from the fixes kept, as
GeoJSON (RFC 7946; ``adapters.storage.history``): a FeatureCollection of one Feature, a
LineString through her fixes in time order (a Point when there is one fix, no feature when
there is none), each fix's time (epoch seconds) and accuracy in its properties. Her agency's
dispatchers read it, and she reads her own.

A window is at most :data:`LONGEST_S` (400 ``window_too_long``), which bounds what one read
walks; without ``since`` it is the hour before ``until`` (now when not given). The fixes kept
are those the retention keeps (``CAREKNOT_FIXES_KEEP_DAYS``)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from adapters.storage.history import History
from api.auth import Caller, may_read_caregiver
from api.problems import Refused
from api.resources import ID, AgencyId, directory
from api.windows import Since, Until, iso, window

CaregiverId = Annotated[str, Path(pattern=ID, description="the caregiver's id")]
LONGEST_S = 24 * 3600.0
DEFAULT_S = 3600.0
"""Without ``since``: the hour before ``until``."""
GEOJSON = "application/geo+json"

router = APIRouter(prefix="/v1/agencies/{agency_id}/caregivers", tags=["caregivers"])


@router.get(
    "/{caregiver_id}/track",
    summary="where she was over a window (at most 24 h), as GeoJSON",
    response_class=JSONResponse,
    responses={
        200: {"content": {GEOJSON: {}}, "description": "a FeatureCollection"},
        400: {"description": "a window that ends before it starts, or longer than 24 h"},
        404: {"description": "no such caregiver of the agency"},
    },
)
async def track(
    request: Request,
    claims: Caller,
    agency_id: AgencyId,
    caregiver_id: CaregiverId,
    since: Since = None,
    until: Until = None,
) -> JSONResponse:
    may_read_caregiver(claims, agency_id, caregiver_id)
    end_at = until if until is not None else iso(time.time())
    start_at = since if since is not None else end_at - timedelta(seconds=DEFAULT_S)
    start, end = window(start_at, end_at, LONGEST_S)
    assert start is not None and end is not None  # a window with a longest has both ends
    if await directory(request).caregiver(agency_id, caregiver_id) is None:
        raise Refused(404, "unknown_caregiver", caregiver_id)
    body = await History(request.app.state.db).track(caregiver_id, start, end)
    return JSONResponse(body, media_type=GEOJSON)
