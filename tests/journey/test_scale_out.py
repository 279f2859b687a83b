"""Scale-out: two ingest processes (one MQTT shared subscription) and two Faust workers (one
consumer group) together lose no fix and double none.

Every fix is published once over MQTT with QoS 1; each reaches one of the ingests, and each
Kafka partition one of the workers. At the end the history holds exactly the fixes published,
and every caregiver's live position is her last one.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import CaregiverRow, Database
from careknot.running import worker_ready
from careknot.servers import die_with_parent
from careknot.up import settings_env
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.support import processes_in

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"scale-out-{RUN}"  # unique to the run: MQTT topics are shared between runs
CAREGIVERS = [f"so-{RUN}-{i}" for i in range(200)]
FIXES_EACH = 5
FIX_EVERY_S = 10  # tst step per caregiver
STEP_DEG = 0.0005  # ~55 m north a step: 20 km/h, well inside the quality filters
ORIGIN = (53.75, -1.60)
START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def position(index: int, step: int) -> tuple[float, float]:
    return (
        ORIGIN[0] + (index % 20) * 0.003 + step * STEP_DEG,
        ORIGIN[1] + (index // 20) * 0.005,
    )


@pytest.fixture(scope="module")
def settings(migrated: Settings) -> Settings:
    """A namespace of its own: its Kafka topics, consumer group and share group are new."""
    return migrated.model_copy(update={"namespace": f"{migrated.namespace}so{RUN}"})


@pytest.fixture(scope="module")
async def database(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings, max_size=2) as db:
        await db.migrate()
        await db.upsert_agency(AGENCY, "Scale-out Care")
        await db.upsert_caregivers([CaregiverRow(cg, AGENCY, f"Carer {cg}") for cg in CAREGIVERS])
        yield db
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.namespace}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def services(
    settings: Settings, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[tuple[Path, subprocess.Popen[bytes]]]]:
    """Two ingests and two workers as child processes; stopped with SIGTERM at the end."""
    if not settings.mqtt_shared_subscriptions:
        pytest.skip("the broker has no shared subscriptions (amqtt): two ingests would both")
    workdir = tmp_path_factory.mktemp("scale-out")
    env = {**os.environ, **settings_env(settings), "CAREKNOT_INGEST_METRICS_PORT": "0"}
    procs = []
    for name in ("ingest-0", "ingest-1", "worker-0", "worker-1"):
        verb = name.split("-")[0]
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "careknot.cli", "-l", "info", verb],
                env={
                    **env,
                    "CAREKNOT_WORKER_DATADIR": str(workdir / name),
                    "CAREKNOT_INGEST_CLIENT_ID": f"careknot-{settings.namespace}-{name}",
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - prctl only
            )
        procs.append((log_path, proc))
    try:
        yield procs
    finally:
        _stop([proc for _, proc in procs])
        for log_path, proc in procs:
            if proc.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write(f"--- {log_path.name}:\n{log_path.read_text()[-4000:]}\n")
    assert all(proc.returncode is not None for _, proc in procs)
    assert processes_in(settings.namespace) == [], "the services left processes behind"


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _all_started(
    settings: Settings, services: list[tuple[Path, subprocess.Popen[bytes]]]
) -> None:
    """Both ingests subscribed and a worker holding partitions (it heartbeats)."""

    async def subscribed() -> bool | None:
        for log_path, proc in services:
            assert proc.poll() is None, f"{log_path.name} exited:\n{log_path.read_text()[-4000:]}"
        ingests = [p for p, _ in services if p.name.startswith("ingest")]
        return True if all("ingest subscribed" in p.read_text() for p in ingests) else None

    await poll_until(subscribed, START_TIMEOUT_S, "both ingests' subscriptions")
    await worker_ready(settings, START_TIMEOUT_S, roles=())


async def _publish(settings: Settings, base_tst: int) -> int:
    """Every caregiver's fixes over MQTT, QoS 1, a step at a time (tst rises per caregiver)."""
    sent = 0
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        for step in range(FIXES_EACH):
            for index, cg in enumerate(CAREGIVERS):
                lat, lon = position(index, step)
                tst = base_tst + step * FIX_EVERY_S
                doc = {"_type": "location", "lat": lat, "lon": lon, "tst": tst, "acc": 8}
                await client.publish(f"ck/{AGENCY}/cg/{cg}/loc", orjson.dumps(doc), qos=1)
                sent += 1
    return sent


async def test_two_ingests_and_two_workers_lose_and_double_nothing(
    settings: Settings,
    database: Database,
    services: list[tuple[Path, subprocess.Popen[bytes]]],
) -> None:
    await _all_started(settings, services)
    base_tst = int(time.time()) - 600
    published = await _publish(settings, base_tst)
    assert published == len(CAREGIVERS) * FIXES_EACH

    async def all_in_history() -> int | None:
        n = await database.pool.fetchval("SELECT count(*) FROM fixes WHERE agency_id = $1", AGENCY)
        return int(n) if n >= published else None

    assert await poll_until(all_in_history, DRAIN_TIMEOUT_S, "every fix in history") == published
    rows = await database.pool.fetch(
        "SELECT caregiver_id, extract(epoch FROM ts)::bigint AS tst FROM fixes"
        " WHERE agency_id = $1",
        AGENCY,
    )
    expected = {
        (cg, base_tst + step * FIX_EVERY_S) for cg in CAREGIVERS for step in range(FIXES_EACH)
    }
    assert sorted((r["caregiver_id"], r["tst"]) for r in rows) == sorted(expected)
    await _live_positions_are_the_last_fixes(settings, base_tst)
    _each_worker_held_fix_partitions(settings, [p for p, _ in services if "worker" in p.name])


def _each_worker_held_fix_partitions(settings: Settings, logs: list[Path]) -> None:
    """Faust logs each assignment as a table: ``| {ns}.fixes | {0, 2} |``."""
    row = re.compile(rf"\|\s*{re.escape(settings.keys.topic('fixes'))}\s*\|\s*\{{\d")
    for log_path in logs:
        assert row.search(log_path.read_text()), f"{log_path.name} never had a fixes partition"


async def _live_positions_are_the_last_fixes(settings: Settings, base_tst: int) -> None:
    last_tst = base_tst + (FIXES_EACH - 1) * FIX_EVERY_S
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with r.pipeline(transaction=False) as pipe:
            for cg in CAREGIVERS:
                pipe.hmget(settings.keys.caregiver(cg), "lat", "lon", "ts")
            live = await pipe.execute()
    finally:
        await r.aclose()
    for index, (lat, lon, t) in enumerate(live):
        assert (float(lat), float(lon), float(t)) == (*position(index, FIXES_EACH - 1), last_tst)
