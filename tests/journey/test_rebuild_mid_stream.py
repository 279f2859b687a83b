"""Redis loses the namespace while caregivers' fixes keep flowing over MQTT into the running
system; ``careknot rebuild`` runs while they still flow, and the picture comes back whole.

Redis loses the namespace in two bites, as eviction or a flush racing the writers would: first
the cell sets, then (once the worker has filled cells again) everything else. Moving caregivers
go on publishing throughout; parked ones published only at the start, so their positions come
back from Postgres alone. Afterwards each caregiver's live position is her newest accepted fix
in the history, she is in exactly the two cells of that position, the busy are those assigned to
an open incident, and the history holds every fix published once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import aiomqtt
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage.handovers import HandoverStore
from adapters.storage.incidents import IncidentStore
from adapters.storage.live import AVAILABLE, BUSY, LiveIndex, cell_of
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from careknot.up import settings_env
from dispatch.candidates import area_of
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.journey.harness import own_worker_ready, running_system

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"rebuild-{RUN}"  # unique to the run: MQTT topics are shared between runs
MOVING = [f"rm-{RUN}-{i}" for i in range(24)]
PARKED = [f"rp-{RUN}-{i}" for i in range(8)]
ON_CALL, OFF_CALL = MOVING[0], PARKED[0]  # assigned to an incident still open
FREED = PARKED[1]  # assigned, then the incident was resolved
PARKED_ROUNDS = 2  # parked caregivers publish only in the first rounds
FIX_EVERY_S = 30
STEP_DEG = 0.011  # ~1.2 km north a fix (147 km/h): every fix lands in another street cell
ORIGIN = (53.60, -1.90)
HOME = (52.60, -1.90)  # the patient's home, far from everyone's route
FLOW_S = 20.0  # the worker keeps up with a round within this
Picture = dict[str, Any]


def position(caregiver: str, round_: int) -> tuple[float, float]:
    column = (MOVING + PARKED).index(caregiver)
    steps = round_ if caregiver in MOVING else min(round_, PARKED_ROUNDS - 1)
    return ORIGIN[0] + steps * STEP_DEG, ORIGIN[1] + column * 0.02


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    """A namespace of its own, seeded before the system starts: the test deletes its keys."""
    own = migrated.model_copy(update={"namespace": f"{migrated.namespace}rm{RUN}"})
    async with Database(own, max_size=2) as db:
        await db.migrate()
        await _seed(db, own)
    yield own
    await _lose(own, lambda key: True)
    conn = await asyncpg.connect(own.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{own.namespace}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_system(settings, tmp_path_factory.mktemp("up-rebuild"), simulate=False) as up:
        yield up


@pytest.fixture(scope="module")
async def database(system: Settings) -> AsyncIterator[Database]:
    async with Database(system, max_size=2) as db:
        yield db


async def _seed(db: Database, settings: Settings) -> None:
    """The agency, its caregivers, and two incidents: one assigned, one assigned and resolved;
    Redis says what the dispatcher would have (the first assignee is busy)."""
    await db.upsert_agency(AGENCY, "Rebuild Care")
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, f"Carer {cg}") for cg in MOVING + PARKED])
    await db.upsert_patients([PatientRow(f"rm-pat-{RUN}", AGENCY, "Pat Rebuild", *HOME)])
    await db.upsert_devices([DeviceRow(f"rm-dev-{RUN}", AGENCY, f"rm-pat-{RUN}", "fall_detector")])
    store, now = IncidentStore(db), time.time()
    handovers = HandoverStore(db)
    await _assign(store, handovers, ON_CALL, now)
    await _assign(store, handovers, OFF_CALL, now)
    resolved = await _assign(store, handovers, FREED, now)
    assert (await handovers.resolve(resolved, AGENCY, "dispatcher:rm", now)).done
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        live = LiveIndex(r, settings)
        await live.set_status(ON_CALL, BUSY)
        await live.set_status(OFF_CALL, BUSY)
    finally:
        await r.aclose()


async def _assign(
    store: IncidentStore, handovers: HandoverStore, caregiver: str, now: float
) -> str:
    opened = await store.open(
        event_id=f"rm-evt-{RUN}-{caregiver}",
        agency_id=AGENCY,
        patient_id=f"rm-pat-{RUN}",
        device_id=f"rm-dev-{RUN}",
        kind="fall",
        severity=1,
        at=now,
    )
    assert opened is not None
    assert (await handovers.assign(opened.id, caregiver, AGENCY, "dispatcher:rm", now)).done
    return opened.id


class Phones:
    """Every caregiver's phone: a round is one fix from each moving caregiver (and from the
    parked ones in the first rounds); a round goes out once the one before it is in history."""

    def __init__(self, client: aiomqtt.Client, db: Database, base_tst: int) -> None:
        self.client, self.db, self.base_tst = client, db, base_tst
        self.published: set[tuple[str, int]] = set()
        self.rounds = 0
        self.stopped = asyncio.Event()

    def tst(self, round_: int) -> int:
        return self.base_tst + round_ * FIX_EVERY_S

    async def keep_publishing(self) -> None:
        while not self.stopped.is_set():
            await self._publish_round()
            await self.recorded(len(self.published) - len(MOVING))

    async def _publish_round(self) -> None:
        senders = MOVING + (PARKED if self.rounds < PARKED_ROUNDS else [])
        for cg in senders:
            lat, lon = position(cg, self.rounds)
            doc = {"_type": "location", "lat": lat, "lon": lon, "tst": self.tst(self.rounds)}
            await self.client.publish(
                f"ck/{AGENCY}/cg/{cg}/loc", orjson.dumps({**doc, "acc": 8}), qos=1
            )
            self.published.add((cg, self.tst(self.rounds)))
        self.rounds += 1

    async def recorded(self, count: int) -> int:
        """Wait until the history holds ``count`` of the agency's fixes."""

        async def enough() -> int | None:
            n = await self.db.pool.fetchval(
                "SELECT count(*) FROM fixes WHERE agency_id = $1", AGENCY
            )
            return int(n) if n >= count else None

        return await poll_until(enough, FLOW_S, f"{count} fixes in history")

    async def more_rounds(self, n: int) -> None:
        """Wait until the history holds ``n`` more rounds than have been published now."""
        rounds = self.rounds + n
        await self.recorded(len(PARKED) * min(rounds, PARKED_ROUNDS) + len(MOVING) * rounds)


async def _lose(settings: Settings, doomed: Callable[[str], bool]) -> int:
    """DEL, one at a time, the namespace's keys ``doomed`` picks (never another namespace's)."""
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    deleted = 0
    try:
        async for key in r.scan_iter(match=settings.keys.everything(), count=1000):
            if doomed(key):
                deleted += int(await r.delete(key))
    finally:
        await r.aclose()
    return deleted


def _cell_set(settings: Settings, key: str) -> bool:
    return key.startswith((settings.keys.cell_prefix("street"), settings.keys.cell_prefix("area")))


async def _picture(settings: Settings) -> Picture:
    """The caregivers' hashes and the cells' members, as (level, agency, cell, id)."""
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    hashes: dict[str, dict[str, str]] = {}
    members: set[tuple[str, str, str, str]] = set()
    try:
        async for key in r.scan_iter(match=settings.keys.caregiver("*"), count=1000):
            hashes[key.rsplit(":", 1)[1]] = cast(dict[str, str], await r.hgetall(key))
        for level in ("street", "area"):
            async for key in r.scan_iter(match=settings.keys.cell_prefix(level) + "*", count=1000):
                _, _, agency, cell = key.split(":")
                ids = cast(list[str], await r.hkeys(key))
                members |= {(level, agency, cell, m) for m in ids}
    finally:
        await r.aclose()
    return {"hashes": hashes, "members": members}


async def _moved_since(settings: Settings, tst: int) -> bool | None:
    """Every moving caregiver has a position in Redis at least as new as ``tst``."""
    hashes = (await _picture(settings))["hashes"]
    newest = [float(hashes.get(cg, {}).get("ts", "-inf")) for cg in MOVING]
    return True if min(newest) >= tst else None


async def _rebuild(settings: Settings) -> str:
    """``careknot rebuild`` as a user runs it, without stopping this event loop (the phones)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "careknot.cli", "-l", "warning", "rebuild"),
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def _newest_in_history(db: Database) -> dict[str, tuple[float, float, float]]:
    rows = await db.pool.fetch(
        "SELECT DISTINCT ON (caregiver_id) caregiver_id, lat, lon, extract(epoch FROM ts) AS t"
        " FROM fixes WHERE agency_id = $1 AND live ORDER BY caregiver_id, ts DESC",
        AGENCY,
    )
    return {r["caregiver_id"]: (r["lat"], r["lon"], float(r["t"])) for r in rows}


def _positions(picture: Picture) -> dict[str, tuple[float, float, float]]:
    return {
        cg: (float(h["lat"]), float(h["lon"]), float(h["ts"]))
        for cg, h in picture["hashes"].items()
        if "ts" in h
    }


async def test_the_picture_comes_back_whole_when_redis_is_lost_mid_stream(
    system: Settings, database: Database
) -> None:
    await own_worker_ready(system)
    client = aiomqtt.Client(system.mqtt_host, system.mqtt_port)
    phones = Phones(client, database, base_tst=int(time.time()) - 3600)
    async with client:
        flowing = asyncio.create_task(phones.keep_publishing())
        try:
            await phones.more_rounds(PARKED_ROUNDS)
            assert await _lose(system, lambda key: _cell_set(system, key)) > 0
            after = phones.tst(phones.rounds)
            await poll_until(lambda: _moved_since(system, after), FLOW_S, "cells filled again")
            assert await _lose(system, lambda key: not _cell_set(system, key)) > 0
            await phones.more_rounds(1)  # the worker writes into what is left
            said = await _rebuild(system)
            await phones.more_rounds(1)
        finally:
            phones.stopped.set()
            await flowing
    assert said.startswith(f"namespace {system.namespace}: ")
    await phones.recorded(len(phones.published))
    newest = await _newest_in_history(database)
    await poll_until(
        lambda: _same_positions(system, newest), FLOW_S, "live positions = newest fixes"
    )
    picture = await _picture(system)
    assert _positions(picture) == newest
    assert set(newest) == set(MOVING + PARKED)
    _each_in_exactly_the_cells_of_her_position(picture)
    busy = {cg for cg, h in picture["hashes"].items() if h.get("status", AVAILABLE) == BUSY}
    assert busy == {ON_CALL, OFF_CALL}
    await _history_holds_each_fix_once(database, phones.published)


async def _same_positions(
    settings: Settings, newest: dict[str, tuple[float, float, float]]
) -> bool | None:
    return True if _positions(await _picture(settings)) == newest else None


def _each_in_exactly_the_cells_of_her_position(picture: Picture) -> None:
    expected = set()
    for cg, h in picture["hashes"].items():
        cell = cell_of(float(h["lat"]), float(h["lon"]))
        assert (h["cell"], h["area"], h["agency"]) == (cell, area_of(cell), AGENCY)
        expected |= {("street", AGENCY, cell, cg), ("area", AGENCY, area_of(cell), cg)}
    assert picture["members"] == expected


async def _history_holds_each_fix_once(db: Database, published: set[tuple[str, int]]) -> None:
    rows = await db.pool.fetch(
        "SELECT caregiver_id, extract(epoch FROM ts)::bigint AS tst, live FROM fixes"
        " WHERE agency_id = $1",
        AGENCY,
    )
    assert sorted((r["caregiver_id"], r["tst"]) for r in rows) == sorted(published)
    assert all(r["live"] for r in rows)
