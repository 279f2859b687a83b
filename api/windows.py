"""Time windows and keyset cursors of the API's reads of the dispatch record.

Every time the API takes, in a body, a query or a file, lies from 1900 until 3000 in UTC
(``Moment``, ``in_calendar``; a day, ``Day``): the calendar's own ends (the year 1 at +23:59, the
year 9999 at -23:59) are outside it once in UTC, and a day or a week from them is past it, so
they are malformed input (400), where they failed the route.

A window is two ISO 8601 times (without a zone they are UTC): its end must come after its start
(400 ``bad_window``) and it may not be longer than the resource allows (400
``window_too_long``), so one read never walks a year of fixes. A list of records in time order
pages with a cursor (``next``, given back as ``?after=``) naming the last record shown by its
time and id; a cursor the API did not make is 400 ``bad_cursor``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime

from api.problems import Refused

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
"""The times the API takes: from the first, until the second (not included)."""


def in_calendar(moment: datetime) -> bool:
    """Whether the moment (UTC if it has no zone) is one the API takes."""
    return EARLIEST <= (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) < LATEST


def _moment(moment: datetime | None) -> datetime | None:
    if moment is not None and not in_calendar(moment):
        raise ValueError("a time from 1900 until 3000 (UTC)")
    return moment


def _day(day: date | None) -> date | None:
    if day is not None and not EARLIEST.date() <= day < LATEST.date():
        raise ValueError("a day from 1900 until 3000")
    return day


Moment = Annotated[AwareDatetime, AfterValidator(_moment)]
"""A time with its offset, from 1900 until 3000 in UTC."""
AnyMoment = Annotated[datetime, AfterValidator(_moment)]
"""A time, UTC if it has no zone, from 1900 until 3000 in UTC."""
Day = Annotated[date, AfterValidator(_day)]
"""A day from 1900 until 3000."""
Since = Annotated[AnyMoment | None, Query(description="from this time (ISO 8601; UTC if no zone)")]
Until = Annotated[AnyMoment | None, Query(description="until this time, not included")]


def epoch(moment: datetime | None) -> float | None:
    """The moment as epoch seconds; one without a zone is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def window(
    since: datetime | None, until: datetime | None, longest_s: float | None = None
) -> tuple[float | None, float | None]:
    """The window as epoch seconds, checked: its end after its start, and no longer than
    ``longest_s`` (when given, both ends are needed)."""
    start, end = epoch(since), epoch(until)
    if start is not None and end is not None and end <= start:
        raise Refused(400, "bad_window", "until must come after since")
    if longest_s is not None and (start is None or end is None or end - start > longest_s):
        raise Refused(400, "window_too_long", f"a window of at most {longest_s / 3600:g} h")
    return start, end


def iso(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def cursor(at: float, record_id: str) -> str:
    """The cursor after a record of time ``at`` and id ``record_id``."""
    return f"{round(at * 1_000_000)}.{record_id}"


def after_cursor(after: str) -> tuple[float, str] | None:
    """The time and id a cursor names (None: the first page); 400 ``bad_cursor``."""
    if not after:
        return None
    micros, _, record_id = after.partition(".")
    try:
        return int(micros) / 1_000_000, str(uuid.UUID(record_id))
    except ValueError:
        raise Refused(400, "bad_cursor", "pass the next of the page before") from None
