"""A week's roster as CSV (``POST /v1/agencies/{agency}/visits:import``), read with the csv module.

The first line names the columns, in any order: ``visit_id``, ``patient_id``, ``caregiver_id``,
``starts_at`` and ``ends_at`` (ISO 8601 with an offset) are needed; ``service`` (``home_care``
if empty), ``tasks`` (separated by ``;``) and ``version`` may follow; other columns are ignored.
Blank lines are skipped. A file over ``MAX_BYTES`` or ``MAX_ROWS`` rows is 413.

A row is written against the version of its visit that the file was made from, as a single
visit's ``PUT`` is against its ``If-Match`` (:meth:`ImportRow.holds`): a row that would change a
visit on the roster carries that visit's ``version`` as read (``version_required`` without it,
``changed`` when the visit has moved since, the visit keeper's steps included), and a row of a
visit not on the roster carries none (``changed`` with one: the visit it was read from is gone).
A row that leaves its visit as it stands needs no version, so a file sent again after it was
written is still written once.

Every row is judged before anything is written, and one bad row means nothing is: the answer
(422 ``bad_rows``) lists each bad row by its line and reason, naming it by its visit id alone
(never a value of the row beyond its ids: the file is about people). Importing a file again
changes nothing the first import wrote: visits are keyed by ``visit_id``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime

from adapters.storage.schedule import VisitPlan, VisitRow
from api.problems import Refused
from api.resources import ID
from api.windows import in_calendar

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5_000
VISIT_MAX_S = 24 * 3600.0
MAX_TASKS = 32
MAX_TEXT = 64
REQUIRED = ("visit_id", "patient_id", "caregiver_id", "starts_at", "ends_at")
_ID = re.compile(ID)
_VERSION = re.compile(r"^[0-9]{1,18}$")


@dataclass(frozen=True, slots=True)
class ImportRow:
    """A good row: the visit it plans, as a single visit's ``PUT`` would write it, and what
    only a row has: its line, and the version of the visit it was made from (None: a visit
    not on the roster when the file was made)."""

    line: int
    plan: VisitPlan
    version: int | None = None

    def holds(self, found: VisitRow | None) -> bool:
        """Whether the row may be written on its visit as it stands: it leaves the visit so,
        or it was made from this very version of it (from none, for a visit not there)."""
        if found is None:
            return self.version is None
        return found.plan == self.plan or found.version == self.version

    def conflict(self) -> str:
        """Why the row did not hold: no version given for a visit on the roster, or another."""
        return "version_required" if self.version is None else "changed"


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row refused: its line, its visit id (None if that is what is wrong) and why."""

    line: int
    visit_id: str | None
    reason: str


def refused_rows(bad: list[BadRow]) -> Refused:
    rows = [{"line": b.line, "visit_id": b.visit_id, "reason": b.reason} for b in bad]
    return Refused(422, "bad_rows", rows)


def read_roster(agency_id: str, body: bytes) -> list[ImportRow | BadRow]:
    """Every row of the agency's file, each good or bad (a file that cannot be read is refused
    whole)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused(422, "not_utf8", "the file is read as UTF-8") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise Refused(422, "bad_header", "no header line")
        names = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED if c not in names]
        if missing or len(set(names)) != len(names):
            said = f"missing {', '.join(missing)}" if missing else "a column named twice"
            raise Refused(422, "bad_header", said)
        out: list[ImportRow | BadRow] = []
        seen: set[str] = set()
        line = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record):
                if len(out) == MAX_ROWS:
                    raise Refused(413, "too_many_rows", f"at most {MAX_ROWS} rows")
                row = _row(agency_id, line, names, record)
                if isinstance(row, ImportRow) and row.plan.id in seen:
                    row = BadRow(line, row.plan.id, "duplicate_visit")
                elif isinstance(row, ImportRow):
                    seen.add(row.plan.id)
                out.append(row)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise Refused(422, "bad_csv", f"line {reader.line_num}: not CSV") from exc
    return out


def _row(  # noqa: PLR0911 (one check after another, each its answer)
    agency_id: str, line: int, names: list[str], record: list[str]
) -> ImportRow | BadRow:
    cells = {n: c.strip() for n, c in zip(names, record, strict=False)}
    visit_id = cells.get("visit_id", "")
    if not _ID.match(visit_id):
        return BadRow(line, None, "bad_visit_id")

    def bad(reason: str) -> BadRow:
        return BadRow(line, visit_id, reason)

    if len(record) != len(names):
        return bad("wrong_number_of_columns")
    for column in ("patient_id", "caregiver_id"):
        if not _ID.match(cells[column]):
            return bad(f"bad_{column}")
    starts_at, ends_at = _moment(cells["starts_at"]), _moment(cells["ends_at"])
    if starts_at is None:
        return bad("bad_starts_at")
    if ends_at is None:
        return bad("bad_ends_at")
    if ends_at <= starts_at:
        return bad("bad_times")
    if ends_at - starts_at > VISIT_MAX_S:
        return bad("too_long")
    service = cells.get("service") or "home_care"
    if len(service) > MAX_TEXT or "\x00" in service:
        return bad("bad_service")
    tasks = tuple(t.strip() for t in cells.get("tasks", "").split(";") if t.strip())
    if len(tasks) > MAX_TASKS or any(len(t) > MAX_TEXT or "\x00" in t for t in tasks):
        return bad("bad_tasks")
    version = cells.get("version", "")
    if version and not _VERSION.match(version):
        return bad("bad_version")
    plan = VisitPlan(
        visit_id,
        agency_id,
        cells["patient_id"],
        cells["caregiver_id"],
        starts_at,
        ends_at,
        service,
        tasks,
    )
    return ImportRow(line, plan, int(version) if version else None)


def _moment(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 time with its offset (None: not one)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None or not in_calendar(moment):
        return None
    return moment.timestamp()
