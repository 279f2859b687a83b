"""A missed dose, end to end on real servers: two patients' heart tablets are due and nobody
takes them, and no dispenser says a word (silence is the signal). When each dose's window
closes its family is told ``missed`` on their WebSocket, so is the caregiver whose visit to the
first patient is due this afternoon, and the agency's dispatchers get a critical
``dose_missed`` alarm; nobody acknowledges, so the ladder climbs to the on-call
manager (through Apprise, to an HTTP endpoint of the test's own); a dispatcher acknowledges
the first alarm from her console and its ladder stops, while the second, left alone, climbs on
to external notification.

``careknot up`` runs as a child process without the simulated city, its schedules read every
second and the agency's ladder short, so the whole story takes seconds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage.alarms import AlarmStore
from adapters.storage.medication import MedicationStore
from adapters.storage.outbox import Outbox
from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.visit_store import VisitStore
from alarms.ladder import Ladder, Step
from kernel import recipients
from kernel.settings import Settings
from medication.doses import Schedule, ScheduledDose
from tests.journey.harness import own_worker_ready, running_system
from tests.support import Frame, Inbox, Phone, is_type, token
from visits.rules import Visit

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"dose-journey-{RUN}"  # unique to the run: channels are shared between runs
FIRST, SECOND = f"dj-pat-1-{RUN}", f"dj-pat-2-{RUN}"
CAREGIVER = f"dj-cg-{RUN}"
HOME = (53.80, -1.55)
ZONE = "Europe/London"
WINDOW_S = 8.0  # overdue at half of it (the worker reads schedules every second), missed at its end
ON_CALL_S, EXTERNAL_S = 2.0, 10.0
LADDER = Ladder(
    (Step("dispatchers", 0.0), Step("on_call", ON_CALL_S), Step("external", EXTERNAL_S))
)


@pytest.fixture(scope="module")
def system(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("up-doses")
    with running_system(
        migrated, workdir, simulate=False, medication_schedules_read_s=1.0
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def ready(system: Settings) -> AsyncIterator[tuple[Settings, Inbox]]:
    """The worker's partitions assigned; the agency, its two patients, a caregiver's visit to
    the first later today, the agency's critical ladder and whom its rungs beyond the
    dispatchers notify."""
    await own_worker_ready(system)
    async with Inbox() as inbox, Database(system) as db:
        await db.upsert_agency(AGENCY, "Dose Journey Care")
        await db.upsert_caregivers([CaregiverRow(CAREGIVER, AGENCY, "Cora Dose")])
        await db.upsert_patients(
            [
                PatientRow(FIRST, AGENCY, "Pat First", *HOME),
                PatientRow(SECOND, AGENCY, "Pat Second", 53.81, -1.56),
            ]
        )
        start = time.time() + 3 * 3600  # her next visit to the first patient
        visit = Visit(f"dj-visit-{RUN}", AGENCY, FIRST, CAREGIVER, start, start + 1800, *HOME, ())
        redis = aioredis.Redis.from_url(system.redis_url)
        await VisitStore(db, redis, system).add_visits([visit])
        await redis.aclose()
        alarms = AlarmStore(db)
        await alarms.set_ladder(AGENCY, "critical", LADDER)
        await alarms.add_contact(AGENCY, "on_call", inbox.url("manager"))
        await alarms.add_contact(AGENCY, "external", inbox.url("sms"))
        yield system, inbox


def heart_tablets(patient_id: str, due_at: float) -> Schedule:
    """One critical dose a day, at ``due_at``'s time of day (to the second)."""
    at = datetime.fromtimestamp(due_at, ZoneInfo(ZONE)).time().replace(microsecond=0)
    dose = ScheduledDose("heart tablets", at, window_s=WINDOW_S, critical=True)
    return Schedule(patient_id, (dose,), zone=ZONE)


def dose_missed_alarm(patient_id: str, status: str) -> Callable[[Frame], bool]:
    def match(frame: Frame) -> bool:
        return is_type("alarm", patient_id=patient_id, status=status)(frame) and (
            frame["kind"],
            frame["severity"],
        ) == ("dose_missed", "critical")

    return match


async def sent_to(s: Settings, recipient: str) -> list[Frame]:
    """The frames of ``recipient``'s outbox, as the relay sends them to her phone."""
    r = aioredis.Redis.from_url(s.redis_url)
    try:
        return [orjson.loads(m) for m in await Outbox(r, s).since(recipient, 0)]
    finally:
        await r.aclose()


async def seen_or_expect(phone: Phone, match: Callable[[Frame], bool]) -> Frame:
    """A frame that came already, or the next to come (frames told together come in either
    order)."""
    for frame in phone.seen:
        if match(frame):
            return frame
    return await phone.expect(match)


def names(alarm_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: alarm_id in body["message"]


async def test_a_missed_dose_is_told_and_climbs_until_a_dispatcher_acknowledges(
    ready: tuple[Settings, Inbox],
) -> None:
    s, inbox = ready
    first_family = await Phone.open(s, token(s, "family", "dj-fam-1", AGENCY, [FIRST]))
    second_family = await Phone.open(s, token(s, "family", "dj-fam-2", AGENCY, [SECOND]))
    desk = await Phone.open(s, token(s, "dispatcher", "dj-desk", AGENCY))
    carer = await Phone.open(s, token(s, "caregiver", CAREGIVER, AGENCY))
    due = float(int(time.time()) + 3)  # (the second dose a second later: its alarm is raised later)
    async with Database(s) as db:
        medication = MedicationStore(db)
        await medication.set_schedule(heart_tablets(FIRST, due), time.time())
        await medication.set_schedule(heart_tablets(SECOND, due + 1), time.time())

    overdue = await first_family.expect(is_type("dose", patient_id=FIRST, outcome="overdue"))
    missed = await first_family.expect(is_type("dose", patient_id=FIRST, outcome="missed"))
    assert overdue["at"] < missed["at"]
    assert missed["critical"] is True and missed["due_at"] == due
    assert missed["at"] >= due + WINDOW_S  # told when its window closed, not before
    told = await carer.expect(is_type("dose", patient_id=FIRST, outcome="missed"))
    assert told["dose_key"] == missed["dose_key"]
    await second_family.expect(is_type("dose", patient_id=SECOND, outcome="missed"))
    # what her phone was sent is in her outbox by now (one announcement writes every
    # recipient's): the second patient's missed dose is not hers to hear
    assert [f["patient_id"] for f in await sent_to(s, recipients.caregiver(CAREGIVER))] == [FIRST]
    assert all(f.get("patient_id") in (SECOND, None) for f in second_family.seen)

    first = await desk.expect(dose_missed_alarm(FIRST, "active_unack"))
    second = await seen_or_expect(desk, dose_missed_alarm(SECOND, "active_unack"))
    assert first["raised_at"] <= second["raised_at"]
    page = await inbox.expect("manager", names(first["alarm_id"]))
    assert "critical" in page["title"]

    await desk.send({"type": "acknowledge", "alarm_id": first["alarm_id"]})
    ack = await desk.expect(is_type("ack", command="acknowledge", alarm_id=first["alarm_id"]))
    result = await seen_or_expect(desk, is_type("command_result", command_id=ack["command_id"]))
    assert result["outcome"] == "done"
    acknowledged = await seen_or_expect(desk, dose_missed_alarm(FIRST, "active_ack"))
    assert acknowledged["acknowledged_by"] == "dispatcher:dj-desk"

    # the second alarm, raised no sooner, reaches its last rung: the ticks have passed the
    # first's, and the first, acknowledged, did not climb to it
    await inbox.expect("sms", names(second["alarm_id"]), within=EXTERNAL_S + 30)
    assert [b for b in inbox.to("sms") if first["alarm_id"] in b["message"]] == []
    assert len([b for b in inbox.to("manager") if first["alarm_id"] in b["message"]]) == 1
    async with Database(s) as db:
        stored = await AlarmStore(db).get(first["alarm_id"])
    assert stored is not None and stored.alarm.acknowledged_by == "dispatcher:dj-desk"
    for phone in (first_family, second_family, desk, carer):
        await phone.close()
