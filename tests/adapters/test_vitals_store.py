"""Vitals in the real Postgres (``adapters/storage/vitals.py``): samples kept once however often
they come, their kept values downsampled to minutes, a series read raw where raw samples are
kept and by the minute before, the raw window pruned, and a patient's own thresholds."""

from __future__ import annotations

import pytest

from adapters.storage.postgres import Database
from adapters.storage.vitals import RAW_WINDOW_S, RawVital, VitalsStore
from tests.adapters.scenes import seed
from vitals.measures import Measure
from vitals.thresholds import Threshold

pytestmark = pytest.mark.servers

T0 = 1_800_000_000.0  # a minute's start
DAYS = 2 * 86_400.0


def samples(device: str, patient: str) -> list[RawVital]:
    """Three minutes of a wrist monitor every 20 s; a spike dropped in the second minute."""
    out = []
    for i in range(9):
        hr = 180.0 if i == 4 else 70.0 + i
        dropped: tuple[Measure, ...] = ("hr",) if i == 4 else ()
        out.append(RawVital(device, patient, T0 + 20 * i, {"hr": hr, "spo2": 97.0}, dropped))
    return out


async def test_samples_are_kept_once_and_downsampled_by_the_minute(db: Database) -> None:
    w = await seed(db)
    store = VitalsStore(db)
    batch = samples(w.device.id, w.patient.id)
    assert await store.record(batch) == 9
    assert await store.record(batch[3:]) == 0  # Kafka delivering it again adds nothing
    assert await store.count_samples([w.patient.id]) == 9

    recent = await store.series(w.patient.id, "hr", T0, T0 + 180, now=T0 + 200)
    kept = [i for i in range(9) if i != 4]  # the spike is not read
    assert [(p.at, p.mean, p.count) for p in recent] == [(T0 + 20 * i, 70.0 + i, 1) for i in kept]
    old = await store.series(w.patient.id, "hr", T0, T0 + 180, now=T0 + DAYS)
    assert [(p.at, p.low, p.high, p.count) for p in old] == [
        (T0, 70.0, 72.0, 3),
        (T0 + 60, 73.0, 75.0, 2),  # 74's spike of 180 dropped
        (T0 + 120, 76.0, 78.0, 3),
    ]
    assert [p.mean for p in old] == pytest.approx([71.0, 74.0, 77.0])
    spo2 = await store.series(w.patient.id, "spo2", T0, T0 + 180, now=T0 + DAYS)
    assert [p.count for p in spo2] == [3, 3, 3]


async def test_a_batch_written_in_parts_adds_up_to_the_whole(db: Database) -> None:
    w = await seed(db)
    store = VitalsStore(db)
    batch = samples(w.device.id, w.patient.id)
    for part in (batch[:2], batch[2:5], batch[5:]):
        await store.record(part)
    old = await store.series(w.patient.id, "hr", T0, T0 + 180, now=T0 + DAYS)
    assert [(p.low, p.high, p.count) for p in old] == [(70, 72, 3), (73, 75, 2), (76, 78, 3)]


async def test_a_series_reads_minutes_before_the_raw_window_and_raw_samples_within(
    db: Database,
) -> None:
    w = await seed(db)
    store = VitalsStore(db)
    await store.record(samples(w.device.id, w.patient.id))
    now = T0 + RAW_WINDOW_S + 90  # the raw window starts within the second minute
    series = await store.series(w.patient.id, "hr", T0, T0 + 180, now=now)
    assert [(p.at, p.count) for p in series] == [
        (T0, 3),
        (T0 + 60, 2),  # not whole in the raw window: its minute
        (T0 + 120, 1),  # raw from the first whole minute
        (T0 + 140, 1),
        (T0 + 160, 1),
    ]


async def test_pruning_forgets_raw_samples_and_keeps_their_minutes(db: Database) -> None:
    w = await seed(db)
    store = VitalsStore(db)
    await store.record(samples(w.device.id, w.patient.id))
    await store.prune(T0 + 60)  # the first minute's three samples
    assert await store.count_samples([w.patient.id]) == 6
    old = await store.series(w.patient.id, "hr", T0, T0 + 180, now=T0 + DAYS)
    assert [p.count for p in old] == [3, 2, 3]


async def test_a_patient_has_rules_of_her_own_and_turns_defaults_off(db: Database) -> None:
    w, other = await seed(db), await seed(db)
    store = VitalsStore(db)
    hers = Threshold("tachycardia", "hr", "above", 100.0, 600.0, clear_at=95.0, severity="minor")
    await store.set_threshold(w.patient.id, "tachycardia", hers)
    await store.set_threshold(w.patient.id, "fever", None)
    found = await store.thresholds([w.patient.id, other.patient.id])
    assert found == {w.patient.id: {"tachycardia": hers, "fever": None}}
    fever = Threshold("fever", "temp", "above", 38.5, 600.0, clear_at=38.0)
    await store.set_threshold(w.patient.id, "fever", fever)  # back on, as she says now
    assert (await store.thresholds([w.patient.id]))[w.patient.id]["fever"] == fever
    with pytest.raises(ValueError, match="kind"):
        await store.set_threshold(w.patient.id, "fever", hers)


async def test_a_device_names_its_patient(db: Database) -> None:
    w = await seed(db)
    found = await VitalsStore(db).patients_of([w.device.id, "no-such-device"])
    assert list(found) == [w.device.id]
    assert (found[w.device.id].agency_id, found[w.device.id].patient_id) == (
        w.agency,
        w.patient.id,
    )
