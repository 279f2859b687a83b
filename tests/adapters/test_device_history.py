"""Each home's device events kept in the real Postgres: every event once (a redelivered one is
not kept twice), with the patient its device belonged to, read back per patient in time order."""

from __future__ import annotations

import secrets

import pytest

from adapters.storage.device_history import DeviceHistory
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from kernel.contracts import DeviceEvent

pytestmark = pytest.mark.servers

T0 = 1_796_000_000.0


def event(device: str, agency: str, seq: int, kind: str = "motion", **data: object) -> DeviceEvent:
    ts = T0 + seq * 60
    return DeviceEvent.model_validate(
        {
            "event_id": f"{device}:{seq}:{round(ts * 1000)}",
            "agency_id": agency,
            "device_id": device,
            "type": kind,
            "ts": ts,
            "seq": seq,
            "data": data,
            "received_at": ts + 0.2,
        }
    )


async def a_home(db: Database) -> tuple[str, str, str, str]:
    run = secrets.token_hex(3)
    agency, patient = f"hist-{run}", f"hist-pat-{run}"
    sensor, door = f"hist-pir-{run}", f"hist-door-{run}"
    await db.upsert_agency(agency, "History Care")
    await db.upsert_patients([PatientRow(patient, agency, "Pat History", 53.8, -1.5)])
    await db.upsert_devices(
        [
            DeviceRow(sensor, agency, patient, "motion_sensor"),
            DeviceRow(door, agency, patient, "door_sensor"),
        ]
    )
    return agency, patient, sensor, door


async def test_every_event_is_kept_once_with_its_patient(db: Database) -> None:
    agency, patient, sensor, door = await a_home(db)
    history = DeviceHistory(db)
    batch = [
        event(sensor, agency, 1, room="kitchen"),
        event(door, agency, 2, "door_open"),
        event(sensor, agency, 3, room="bathroom"),
    ]
    assert await history.keep(batch) == 3
    assert await history.keep([batch[1], event(sensor, agency, 4, room="hall")]) == 1
    assert await history.count(agency) == 4
    kept = await history.of_patient(patient, T0, T0 + 3600)
    assert [(k.type, k.data.get("room"), k.patient_id) for k in kept] == [
        ("motion", "kitchen", patient),
        ("door_open", None, patient),
        ("motion", "bathroom", patient),
        ("motion", "hall", patient),
    ]
    assert [k.ts for k in kept] == sorted(k.ts for k in kept)


async def test_a_patients_history_reads_a_window_and_the_types_asked_for(db: Database) -> None:
    agency, patient, sensor, door = await a_home(db)
    history = DeviceHistory(db)
    await history.keep([event(sensor, agency, n) for n in range(1, 6)])
    await history.keep([event(door, agency, 10, "door_open")])
    window = await history.of_patient(patient, T0 + 2 * 60, T0 + 4 * 60)
    assert [k.event_id.split(":")[1] for k in window] == ["2", "3"]
    doors = await history.of_patient(patient, T0, T0 + 3600, types=["door_open"])
    assert [k.device_id for k in doors] == [door]
    assert await history.of_patient("nobody", T0, T0 + 3600) == []


async def test_an_event_of_an_unregistered_device_is_kept_without_a_patient(db: Database) -> None:
    agency, *_ = await a_home(db)
    history = DeviceHistory(db)
    assert await history.keep([event("hist-unknown", agency, 1)]) == 1
    assert await history.count(agency) == 1
