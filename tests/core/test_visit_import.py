"""Reading a week's roster from CSV (``api.visit_import``), pure: any bytes at all are either read
into rows, each good or bad with its line, or refused whole with a reason, never anything else
(so never a 500); good rows come back as written; a bad row is named by its own line, among good
ones, and never by a value beyond its visit id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.problems import Refused
from api.visit_import import BadRow, ImportRow, read_roster

HEADER = "visit_id,patient_id,caregiver_id,starts_at,ends_at,service,tasks"
START = datetime(2031, 3, 10, 9, tzinfo=UTC).timestamp()
AGENCY = "a1"


def line(n: int, start: float = START, hours: float = 1.0, tasks: str = "meds;lunch") -> str:
    s = datetime.fromtimestamp(start, tz=UTC).isoformat()
    e = datetime.fromtimestamp(start + hours * 3600, tz=UTC).isoformat()
    return f"v{n},p{n % 3},cg{n % 2},{s},{e},home_care,{tasks}"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: (HEADER + "\n" + t).encode()))
def test_any_bytes_are_read_or_refused_with_a_reason(body: bytes) -> None:
    try:
        rows = read_roster(AGENCY, body)
    except Refused as refused:
        assert refused.status in (413, 422) and refused.reason
        return
    assert all(isinstance(r, ImportRow | BadRow) for r in rows)
    assert [r.line for r in rows] == sorted(r.line for r in rows)


@given(st.lists(st.integers(min_value=0, max_value=10**6), unique=True, max_size=40))
def test_good_rows_come_back_as_written(ns: list[int]) -> None:
    rows = read_roster(AGENCY, "\n".join([HEADER, *(line(n, START + n) for n in ns)]).encode())
    good = [r for r in rows if isinstance(r, ImportRow)]
    assert len(good) == len(rows)
    assert [(r.line, r.plan.id, r.plan.agency_id, r.plan.starts_at) for r in good] == [
        (k + 2, f"v{n}", AGENCY, START + n) for k, n in enumerate(ns)
    ]
    assert all(r.plan.tasks == ("meds", "lunch") for r in good)


@given(st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=30))
def test_a_bad_row_is_named_by_its_own_line(before: int, after: int) -> None:
    lines = [HEADER, *(line(n) for n in range(before))]
    lines.append(line(999, hours=-1))  # ends before it starts
    lines += [line(1000 + n) for n in range(after)]
    rows = read_roster(AGENCY, "\n".join(lines).encode())
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert bad == [BadRow(before + 2, "v999", "bad_times")]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("bad id!,p1,cg1,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z,,", "bad_visit_id"),
        ("v1,p 1,cg1,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z,,", "bad_patient_id"),
        ("v1,p1,,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z,,", "bad_caregiver_id"),
        ("v1,p1,cg1,2031-03-10T09:00:00,2031-03-10T10:00:00Z,,", "bad_starts_at"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,soon,,", "bad_ends_at"),
        ("v1,p1,cg1,0001-01-01T00:00:00+23:59,0001-01-01T01:00:00+23:59,,", "bad_starts_at"),
        ("v1,p1,cg1,9999-12-31T20:00:00-23:59,9999-12-31T22:00:00-23:59,,", "bad_starts_at"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,9999-12-31T22:00:00-23:59,,", "bad_ends_at"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,2031-03-11T10:00:00Z,,", "too_long"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z," + "s" * 65 + ",", "bad_service"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z,," + ";".join("t" * 33), "bad_tasks"),
        ("v1,p1,cg1,2031-03-10T09:00:00Z,2031-03-10T10:00:00Z", "wrong_number_of_columns"),
    ],
)
def test_each_bad_row_says_why(row: str, reason: str) -> None:
    (bad,) = read_roster(AGENCY, f"{HEADER}\n{row}\n".encode())
    assert isinstance(bad, BadRow) and (bad.line, bad.reason) == (2, reason)


def test_a_file_in_another_column_order_with_blank_lines_and_a_bom_is_read() -> None:
    body = "\ufeffends_at,starts_at,caregiver_id,patient_id,visit_id,note\n\n"
    body += "2031-03-10T10:00:00+01:00,2031-03-10T09:00:00+01:00,cg1,p1,v1,anything\n"
    (row,) = read_roster(AGENCY, body.encode())
    assert isinstance(row, ImportRow)
    assert (row.line, row.plan.id, row.plan.service, row.plan.tasks) == (3, "v1", "home_care", ())
    assert row.plan.starts_at == START - 3600


@pytest.mark.parametrize(("cell", "version"), [("", None), ("0", 0), ("17", 17)])
def test_a_row_gives_the_version_its_visit_was_read_at_or_none(
    cell: str, version: int | None
) -> None:
    (row,) = read_roster(AGENCY, f"{HEADER},version\n{line(1)},{cell}\n".encode())
    assert isinstance(row, ImportRow) and row.version == version


@pytest.mark.parametrize("cell", ["v1", "-1", "1.0", "1" * 19])
def test_a_version_that_is_no_count_is_a_bad_row(cell: str) -> None:
    (bad,) = read_roster(AGENCY, f"{HEADER},version\n{line(1)},{cell}\n".encode())
    assert isinstance(bad, BadRow) and (bad.line, bad.reason) == (2, "bad_version")
