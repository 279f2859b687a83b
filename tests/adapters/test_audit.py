"""The audit cannot be edited: the event log and the access log refuse UPDATE, DELETE and
TRUNCATE in the database itself, whoever asks (the application's own connection here); the
access log keeps who read what, each record once."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest

from adapters.storage.access_log import AccessLog
from adapters.storage.postgres import Database, EventRow
from kernel.contracts import AccessRecord

pytestmark = pytest.mark.servers


async def one_event(db: Database) -> str:
    key = f"audit-{uuid.uuid4().hex}"
    async with db.transaction() as conn:
        await db.append_events(
            conn, [EventRow(key, "ag-audit", None, "note", "test", time.time(), {})]
        )
    return key


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE events SET actor = 'someone else' WHERE event_key = $1",
        "DELETE FROM events WHERE event_key = $1",
    ],
)
async def test_the_event_log_refuses_to_be_changed_or_emptied(db: Database, tamper: str) -> None:
    key = await one_event(db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.pool.execute(tamper, key)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.pool.execute("TRUNCATE events")
    kept = await db.pool.fetchrow("SELECT actor FROM events WHERE event_key = $1", key)
    assert kept is not None and kept["actor"] == "test"
    assert await one_event(db)  # appending still works


def record(subject: str, recipient: str, patient: str | None = None) -> AccessRecord:
    return AccessRecord(
        record_id=uuid.uuid4().hex,
        agency_id="ag-audit",
        role="family" if patient else "dispatcher",
        subject=subject,
        recipient=recipient,
        patient_id=patient,
        at=time.time(),
    )


async def test_the_access_log_keeps_each_read_once_and_refuses_to_be_changed(
    db: Database,
) -> None:
    log = AccessLog(db)
    family = record("fam-a", "patient:ag-audit:p-a", "p-a")
    desk = record("desk-a", "agency:ag-audit")
    other = record("fam-b", "patient:ag-audit:p-b", "p-b")
    assert await log.keep([family, desk, other]) == 3
    assert await log.keep([family]) == 0  # delivered again: kept once
    reads = await log.of_patient("ag-audit", "p-a")
    assert {(r.role, r.subject) for r in reads} >= {("family", "fam-a"), ("dispatcher", "desk-a")}
    assert "fam-b" not in {r.subject for r in reads}
    for tamper in ("UPDATE access_log SET subject = 'x'", "DELETE FROM access_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.pool.execute(tamper)
