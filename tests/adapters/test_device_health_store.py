"""Devices' health on the real Postgres: what the devices worker saves it reads back whole;
a device of a kind the system does not know is refused where it is registered."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from adapters.storage.device_health import Device, DeviceHealthStore, Watched
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from devices.health import HealthPolicy, Heard, first_heard, gone, heard
from devices.kinds import KINDS, UNKNOWN_KIND
from kernel.errors import RejectedInput

pytestmark = pytest.mark.servers

T0 = 1_700_000_000.0


async def registered(db: Database, kind: str) -> DeviceRow:
    tag = uuid.uuid4().hex[:8]
    agency = f"dh-{tag}"
    await db.upsert_agency(agency, "Device Health Care")
    await db.upsert_patients([PatientRow(f"dh-{tag}-p", agency, "Ada", 53.8, -1.55)])
    row = DeviceRow(f"dh-{tag}-d", agency, f"dh-{tag}-p", kind)
    await db.upsert_devices([row])
    return row


async def test_what_is_saved_is_read_back_whole(db: Database) -> None:
    row = await registered(db, "dispenser")
    store, p = DeviceHealthStore(db), HealthPolicy()
    device = await store.device(row.id)
    assert device == Device(row.id, row.agency_id, row.patient_id, KINDS["dispenser"])
    h, _ = heard(first_heard(device.kind, T0), Heard(T0, True, 7, True, 30.0), p)
    h, _ = gone(h, T0 + 40, p)
    await store.save([Watched(device, h, rssi=-71.0, firmware="2.1.0")])
    back = {w.device.id: w for w in await store.watched()}[row.id]
    assert back == Watched(device, h, -71.0, "2.1.0")
    assert (back.health.battery_alarm, back.health.drops) == ("major", (T0 + 40,))

    later = replace(h, online=True, last_seen=T0 + 50)
    await store.save([Watched(device, later)])  # no signal nor firmware said: kept
    again = {w.device.id: w for w in await store.watched()}[row.id]
    assert (again.health, again.rssi, again.firmware) == (later, -71.0, "2.1.0")


async def test_a_device_of_a_kind_not_known_is_refused_where_it_is_registered(
    db: Database,
) -> None:
    row = await registered(db, "motion_sensor")
    with pytest.raises(RejectedInput) as refused:
        await db.upsert_devices([replace(row, kind="toaster"), replace(row, id=row.id + "x")])
    assert refused.value.reason == UNKNOWN_KIND
    assert await db.device(row.id + "x") is None  # nothing of the batch written
    assert (await db.device(row.id)) == row


async def test_a_row_of_a_kind_not_known_is_skipped_not_judged(db: Database) -> None:
    row = await registered(db, "door_sensor")
    store = DeviceHealthStore(db)
    device = await store.device(row.id)
    assert device is not None
    await store.save([Watched(device, first_heard(device.kind, T0))])
    await db.pool.execute("UPDATE devices SET kind = 'toaster' WHERE id = $1", row.id)
    assert await store.device(row.id) is None
    assert row.id not in {w.device.id for w in await store.watched()}
