"""Patients' names sealed in Postgres under a data key of each patient's own, forgotten for
good when her key is deleted, and the retention of fixes; on the real Postgres."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from adapters import kafka
from adapters.key_file import LocalKeyFile
from adapters.storage.history import History
from adapters.storage.incidents import IncidentStore
from adapters.storage.postgres import Database, PatientRow
from adapters.storage.retention import DAY_S, apply_retention, prune_fixes
from kernel import keys
from kernel.sealing import FORGOTTEN, UNREADABLE
from kernel.settings import Settings
from tests.adapters.scenes import LEEDS, SceneMaker, fix, seed

pytestmark = pytest.mark.servers


def patient(agency: str, name: str) -> PatientRow:
    return PatientRow(f"p-{uuid.uuid4().hex[:8]}", agency, name, *LEEDS)


async def agency(db: Database) -> str:
    agency_id = f"ag-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Sealed")
    return agency_id


async def raw_row(db: Database, patient_id: str) -> dict[str, object]:
    row = await db.pool.fetchrow("SELECT * FROM patients WHERE id = $1", patient_id)
    assert row is not None
    return dict(row)


async def test_a_name_is_sealed_in_the_table_and_reads_back_unsealed(db: Database) -> None:
    a = await agency(db)
    edith = patient(a, "Edith Marjorie Cresswell")
    await db.upsert_patients([edith])

    row = await raw_row(db, edith.id)
    assert row["name"] is None
    sealed = row["name_sealed"]
    assert isinstance(sealed, bytes)
    assert b"Edith" not in sealed and b"Cresswell" not in sealed
    everything = await db.pool.fetchval(
        "SELECT p::text || coalesce(k::text, '') FROM patients p"
        " LEFT JOIN patient_keys k ON k.patient_id = p.id WHERE p.id = $1",
        edith.id,
    )
    assert "Edith" not in everything and "Cresswell" not in everything
    key = await db.pool.fetchrow(
        "SELECT kek_id, created_at FROM patient_keys WHERE patient_id = $1", edith.id
    )
    assert key is not None and key["kek_id"] == db.kek.kek_id

    read = await db.patient(edith.id)
    assert read is not None
    assert (read.name, read.agency_id, read.forgotten) == ("Edith Marjorie Cresswell", a, False)
    assert (read.lat, read.lon) == LEEDS  # her home stays plain: dispatch measures from it

    await db.upsert_patients([replace(edith, name="Edith M. Cresswell")])  # registered again
    again = await db.patient(edith.id)
    assert again is not None and again.name == "Edith M. Cresswell"
    assert (
        await db.pool.fetchval("SELECT count(*) FROM patient_keys WHERE patient_id = $1", edith.id)
        == 1
    )


async def test_a_plain_name_cannot_be_written_to_the_table(db: Database) -> None:
    a = await agency(db)
    with pytest.raises(Exception, match="patients_name_sealed"):
        await db.pool.execute(
            "INSERT INTO patients(id, agency_id, name, lat, lon) VALUES ($1, $2, $3, 0, 0)",
            f"p-{uuid.uuid4().hex[:8]}",
            a,
            "Plain Name",
        )


async def test_one_patients_sealed_name_does_not_open_as_anothers(db: Database) -> None:
    a = await agency(db)
    first, second = patient(a, "Alice First"), patient(a, "Bea Second")
    await db.upsert_patients([first, second])
    stolen = (await raw_row(db, first.id))["name_sealed"]
    await db.pool.execute("UPDATE patients SET name_sealed = $2 WHERE id = $1", second.id, stolen)

    read = await db.patient(second.id)
    assert read is not None
    assert read.name == UNREADABLE  # her key, and her id as associated data: it does not open
    # and the first patient's wrapped key moved to the second does not unwrap for her either
    wrapped = await db.pool.fetchval(
        "SELECT wrapped FROM patient_keys WHERE patient_id = $1", first.id
    )
    await db.pool.execute(
        "UPDATE patient_keys SET wrapped = $2 WHERE patient_id = $1", second.id, wrapped
    )
    read = await db.patient(second.id)
    assert read is not None and read.name == UNREADABLE
    still = await db.patient(first.id)
    assert still is not None and still.name == "Alice First"


async def test_another_key_encryption_key_opens_nothing(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    a = await agency(db)
    edith = patient(a, "Edith Other-Key")
    await db.upsert_patients([edith])
    other = LocalKeyFile(tmp_path / "another-kek")
    async with Database(settings, kek=other, max_size=1) as elsewhere:
        read = await elsewhere.patient(edith.id)
    assert read is not None and read.name == UNREADABLE


async def test_a_forgotten_patient_is_unreadable_for_ever_and_the_rest_goes_on(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([300])
    her = s.w.patient
    assert (await db.patient(her.id)) is not None

    assert await db.forget_patient(her.id, "dpo:test", s.clock.now)

    read = await db.patient(her.id)
    assert read is not None
    assert (read.name, read.forgotten, read.agency_id) == (FORGOTTEN, True, s.w.agency)
    assert (
        await db.pool.fetchval("SELECT count(*) FROM patient_keys WHERE patient_id = $1", her.id)
        == 0
    )
    (event,) = await db.pool.fetch(
        "SELECT agency_id, incident_id, actor, payload::text FROM events"
        " WHERE kind = 'patient_forgotten' AND event_key = $1",
        f"patient_forgotten:{her.id}",
    )
    assert (event["agency_id"], event["incident_id"], event["actor"]) == (
        s.w.agency,
        None,
        "dpo:test",
    )
    assert her.id in event["payload"]

    # registered again (a simulator starting anew): she stays forgotten, no key is made
    await db.upsert_patients([replace(her, name="Edith Again")])
    read = await db.patient(her.id)
    assert read is not None and read.name == FORGOTTEN
    assert (
        await db.pool.fetchval("SELECT count(*) FROM patient_keys WHERE patient_id = $1", her.id)
        == 0
    )
    assert await db.forget_patient(her.id, "dpo:test", s.clock.now)  # twice: harmless
    assert not await db.forget_patient("nobody-at-all", "dpo:test", s.clock.now)

    # her fall still dispatches: her home, her device, her agency are as they were
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [1]
    await s.answer(0, "accept")
    row = await IncidentStore(db).get(incident.id)
    assert row is not None and row.state == "assigned"


async def test_retention_deletes_old_fixes_and_keeps_recent_ones(
    db: Database, settings: Settings
) -> None:
    w = await seed(db, caregivers=1)
    now = time.time()
    keep_s = settings.fix_history_keep_days * DAY_S
    old = [fix(w.cg(0), w.agency, LEEDS, now - keep_s - 3600 * h) for h in (1, 2, 30)]
    recent = [
        fix(w.cg(0), w.agency, LEEDS, now - keep_s + 3600),
        fix(w.cg(0), w.agency, LEEDS, now),
    ]
    assert await History(db).record(old + recent) == 5

    pruned = await apply_retention(db, settings, now)

    assert pruned.fixes >= 3  # other tests' fixes in this namespace are recent
    times = await db.pool.fetch(
        "SELECT extract(epoch FROM ts) AS at FROM fixes WHERE caregiver_id = $1 ORDER BY ts",
        w.cg(0),
    )
    assert [float(r["at"]) for r in times] == pytest.approx([f.ts for f in recent])
    assert await prune_fixes(db, now - keep_s) == 0  # run again: nothing more


async def test_the_dead_letter_topic_keeps_its_letters_for_the_retention_set(
    settings: Settings,
) -> None:
    own = settings.model_copy(update={"deadletter_keep_days": 3.0})  # its topics: none yet
    await kafka.ensure_topics(own, [keys.DEADLETTER, keys.FIXES])
    admin = AIOKafkaAdminClient(bootstrap_servers=own.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, own.keys.topic(name))
                for name in (keys.DEADLETTER, keys.FIXES)
            ]
        )
    finally:
        await admin.close()
    configs = {
        resource["resource_name"]: {
            e["config_names"]: e["config_value"] for e in resource["config_entries"]
        }
        for response in described
        for resource in response.to_object()["resources"]
    }
    assert configs[own.keys.topic(keys.DEADLETTER)]["retention.ms"] == str(3 * 86_400_000)
    assert "retention.ms" not in configs[own.keys.topic(keys.FIXES)] or configs[
        own.keys.topic(keys.FIXES)
    ]["retention.ms"] != str(3 * 86_400_000)
