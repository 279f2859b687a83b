"""A visits report: caregiver hours and visit punctuality over a period, from visit records.

:func:`summarise` gives one :class:`CaregiverLine` per caregiver; :func:`render` writes CSV (one
line per caregiver) or JSON (the lines, and every visit with its six EVV facts). ``careknot
report visits`` and the HTTP API's ``.../visits/report`` both render it.

A visit is *verified* once checked in and out; its hours are check-out minus check-in. It is
*on time* when checked in no later than ``ON_TIME_S`` after its start; punctuality is the share
of checked-in visits that were on time. Manual check-ins count, and are counted apart.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from visits.rules import Evidence, VisitRecord

ON_TIME_S = 300.0
Format = Literal["csv", "json"]


@dataclass(frozen=True, slots=True)
class CaregiverLine:
    caregiver_id: str
    visits: int
    verified: int
    missed: int
    manual: int
    scheduled_hours: float
    verified_hours: float
    on_time: int
    late: int
    punctuality: float | None
    mean_lateness_min: float | None


def summarise(records: Iterable[VisitRecord]) -> list[CaregiverLine]:
    """One line per caregiver, by id."""
    by_caregiver: dict[str, list[VisitRecord]] = {}
    for r in records:
        by_caregiver.setdefault(r.visit.caregiver_id, []).append(r)
    return [_line(cid, rs) for cid, rs in sorted(by_caregiver.items())]


def _line(caregiver_id: str, records: list[VisitRecord]) -> CaregiverLine:
    checked_in = [r for r in records if r.check_in is not None]
    lateness = [r.check_in.at - r.visit.start for r in checked_in if r.check_in is not None]
    on_time = sum(1 for x in lateness if x <= ON_TIME_S)
    verified = [r for r in checked_in if r.check_out is not None]
    late = [x for x in lateness if x > ON_TIME_S]
    return CaregiverLine(
        caregiver_id=caregiver_id,
        visits=len(records),
        verified=len(verified),
        missed=sum(1 for r in records if r.state == "missed"),
        manual=sum(1 for r in records if r.needs_review),
        scheduled_hours=round(sum(r.visit.end - r.visit.start for r in records) / 3600, 2),
        verified_hours=round(sum(_worked_s(r) for r in verified) / 3600, 2),
        on_time=on_time,
        late=len(late),
        punctuality=round(on_time / len(lateness), 3) if lateness else None,
        mean_lateness_min=round(sum(late) / len(late) / 60, 1) if late else None,
    )


def _worked_s(r: VisitRecord) -> float:
    if r.check_in is None or r.check_out is None:
        return 0.0
    return max(0.0, r.check_out.at - r.check_in.at)


def evv_row(r: VisitRecord) -> dict[str, Any]:
    """A visit's six EVV facts: service, recipient, date, location, provider, start and end."""
    v = r.visit
    return {
        "visit_id": v.visit_id,
        "service": v.service,
        "recipient": v.patient_id,
        "provider": v.caregiver_id,
        "date": _iso(v.start)[:10],
        "location": {"lat": v.lat, "lon": v.lon},
        "scheduled": {"start": _iso(v.start), "end": _iso(v.end)},
        "state": r.state,
        "check_in": _evidence(r.check_in),
        "check_out": _evidence(r.check_out),
        "needs_review": r.needs_review,
    }


def render(records: list[VisitRecord], fmt: Format, meta: dict[str, str]) -> str:
    lines = summarise(records)
    if fmt == "json":
        body = {**meta, "caregivers": [asdict(x) for x in lines]}
        return json.dumps({**body, "visits": [evv_row(r) for r in records]}, indent=2)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CaregiverLine.__dataclass_fields__)
    for line in lines:
        writer.writerow(["" if x is None else x for x in asdict(line).values()])
    return out.getvalue()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def _evidence(e: Evidence | None) -> dict[str, Any] | None:
    return None if e is None else {**asdict(e), "at": _iso(e.at)}
