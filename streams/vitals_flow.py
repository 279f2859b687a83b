"""The vitals' agent: telemetry samples filtered, kept and judged against each patient's
thresholds, in the ``devices`` role's own consumer group so the dispatch worker never waits
on them.

Each batch (messages of packed samples, ``ingest.batching``) is decoded; each sample's device
named to its patient (the registry read in one query for the devices not known, and again
every :data:`KNOWN_FOR_S`); each patient's samples judged in time order by her
:class:`~vitals.patient.PatientVitals` (spikes dropped before any rule, thresholds held for a
duration, with hysteresis); then the batch kept in Postgres (``adapters.storage.vitals``: raw
samples once each, minutes of the kept values) and, only once it is kept, the alarms its rules
raised or cleared (``AlarmKeeper``: source ``patient:{id}``, the rule's kind and severity;
the dispatch worker climbs their ladders). A patient's state lives in this worker's memory
between batches, started from her thresholds and her vitals alarms already active, read again
every :data:`KNOWN_FOR_S`, and forgotten when partitions move. Samples are partitioned by
device: two devices of one patient taken by two workers judge her apart (one worker of the
role, as ``careknot up`` runs, judges her whole). A batch the servers fail is retried while
they are away (``streams.handling``); a sample whose device is not registered, or that does
not decode, is dead-lettered with its reason. Raw samples older than a day are pruned by a
timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from pydantic import TypeAdapter

from adapters.storage.alarms import AlarmStore
from adapters.storage.vitals import RAW_WINDOW_S, DevicePatient, RawVital, VitalsStore
from kernel import keys
from kernel.contracts import TelemetrySample, vitals_of
from kernel.settings import Settings
from streams.alarm_keeper import AlarmKeeper
from streams.decoding import Refused, decode_packed
from streams.handling import Park, with_retries
from streams.runtime import Runtime
from vitals.patient import AlarmChange, PatientVitals
from vitals.thresholds import for_patient

log = logging.getLogger(__name__)

SAMPLE_MESSAGES = 256
"""Each message packs up to ``ingest.batching.MAX_FIXES_PER_MESSAGE`` (500) samples, so a batch
taken from a backlog is a transaction of 128,000 rows at most."""
BATCH_WITHIN_S = 0.2
"""A few of ingest's flushes: a batch's round trips to Postgres are paid once for more samples,
and a vitals rule holds for minutes, so a fifth of a second more is nothing to it."""
KNOWN_FOR_S = 60.0
"""How long a device's patient and a patient's thresholds are taken as read."""
PRUNE_EVERY_S = 600.0
UNKNOWN_DEVICE = "unknown_device"


def source_of(patient_id: str) -> str:
    """The source of a patient's vitals alarms."""
    return f"patient:{patient_id}"


@dataclass(frozen=True, slots=True)
class Raised:
    """A rule's change for a patient, to be told once the batch is kept."""

    agency_id: str
    patient_id: str
    change: AlarmChange


class Patients:
    """Each device's patient and each patient's vitals, kept between batches."""

    def __init__(self, store: VitalsStore, alarms: AlarmStore, clock: Callable[[], float]) -> None:
        self._store, self._alarms, self._clock = store, alarms, clock
        self._devices: dict[str, tuple[DevicePatient | None, float]] = {}
        self._vitals: dict[str, tuple[PatientVitals, float]] = {}

    def forget(self) -> None:
        """Partitions moved: another worker may judge these patients meanwhile."""
        self._devices.clear()
        self._vitals.clear()

    async def of_devices(self, device_ids: Iterable[str]) -> dict[str, DevicePatient]:
        """The patient of each registered device among ``device_ids``."""
        now, ids = self._clock(), set(device_ids)
        stale = [d for d in ids if d not in self._devices or self._devices[d][1] <= now]
        if stale:
            found = await self._store.patients_of(stale)
            for d in stale:
                self._devices[d] = (found.get(d), now + KNOWN_FOR_S)
        return {d: who for d in ids if (who := self._devices[d][0]) is not None}

    async def vitals(self, patient_ids: Iterable[str]) -> dict[str, PatientVitals]:
        """Each patient's vitals, started (or her rules read again) where not fresh."""
        now, ids = self._clock(), set(patient_ids)
        stale = sorted(p for p in ids if p not in self._vitals or self._vitals[p][1] <= now)
        if stale:
            await self._read(stale, now)
        return {p: self._vitals[p][0] for p in ids}

    async def _read(self, patient_ids: Sequence[str], now: float) -> None:
        own = await self._store.thresholds(patient_ids)
        active = await self._alarms.active_kinds([source_of(p) for p in patient_ids])
        for p in patient_ids:
            rules = for_patient(own.get(p, {}))
            known = self._vitals.get(p)
            if known is None:
                started = PatientVitals.start(rules, active.get(source_of(p), set()))
                self._vitals[p] = (started, now + KNOWN_FOR_S)
            else:
                known[0].retune(rules)
                self._vitals[p] = (known[0], now + KNOWN_FOR_S)


class VitalsPipeline:
    """What the ``vitals`` agent does with each batch it takes."""

    def __init__(self, rt: Runtime, s: Settings, clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.store = VitalsStore(rt.db)
        self.patients = Patients(self.store, AlarmStore(rt.db), time.monotonic)
        self.alarms = AlarmKeeper(s, rt.db, rt.redis, clock)
        self.stored = 0

    async def handle(self, values: list[bytes]) -> None:
        refused: list[Refused] = []
        samples = [s for s in decode_samples(values, refused) if vitals_of(s)]
        await self.rt.ready()
        if samples:
            park = self.rt.parker_of(keys.TELEMETRY, samples)
            known = await with_retries("reading patients", partial(self._known, samples), park)
            if known is not None:
                kept, raised = self._judge(samples, *known, refused)
                await self._keep(kept, raised, park)
        await self.rt.park(keys.TELEMETRY, refused)

    async def _known(
        self, samples: list[TelemetrySample]
    ) -> tuple[dict[str, DevicePatient], dict[str, PatientVitals]]:
        """The patient of each sample's device, and each such patient's vitals."""
        owners = await self.patients.of_devices(s.device_id for s in samples)
        patients = {who.patient_id for who in owners.values()}
        return owners, await self.patients.vitals(patients)

    def _judge(
        self,
        samples: list[TelemetrySample],
        owners: dict[str, DevicePatient],
        vitals: dict[str, PatientVitals],
        refused: list[Refused],
    ) -> tuple[list[RawVital], list[Raised]]:
        """Each sample judged for its patient in time order; one of a device nobody
        registered refused."""
        kept, raised = [], []
        for s in sorted(samples, key=lambda s: s.ts):
            who = owners.get(s.device_id)
            if who is None:
                detail = f"{s.device_id}: no such device in the registry"
                refused.append(Refused(s.model_dump_json().encode(), UNKNOWN_DEVICE, detail))
                continue
            values = vitals_of(s)
            judged = vitals[who.patient_id].observe(s.ts, values)
            kept.append(RawVital(s.device_id, who.patient_id, s.ts, values, judged.dropped))
            raised += [Raised(who.agency_id, who.patient_id, c) for c in judged.changes]
        return kept, raised

    async def _keep(self, kept: list[RawVital], raised: list[Raised], park: Park) -> None:
        """The samples into Postgres, then (once they are kept) their alarms raised or
        cleared."""
        new = await with_retries(f"{len(kept)} vitals", partial(self.store.record, kept), park)
        if new is None:
            return  # parked: their alarms wait for the samples to be replayed
        self.stored += new
        for r in raised:
            await with_retries(f"vitals alarm {r.change.kind}", partial(self._tell, r))

    async def _tell(self, r: Raised) -> None:
        c, source = r.change, source_of(r.patient_id)
        if c.change == "clear":
            await self.alarms.clear(r.agency_id, source, c.kind)
            return
        log.info("vitals: %s for patient %s", c.kind, r.patient_id)  # no readings in logs
        await self.alarms.raise_(
            r.agency_id, source, c.kind, c.rule.severity, r.patient_id, c.detail
        )

    async def prune(self) -> None:
        gone = await self.store.prune(time.time() - RAW_WINDOW_S)
        if gone:
            log.info("vitals: %d raw samples older than the window pruned", gone)


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    pipeline = VitalsPipeline(rt, s)

    async def forget(sender: Any, *args: Any, **kwargs: Any) -> None:
        pipeline.patients.forget()

    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]

    @app.agent(topic(keys.TELEMETRY), name="vitals")
    async def vitals(stream: Any) -> None:
        """Telemetry samples filtered, kept and judged; sustained breaches raise alarms."""
        async for batch in stream.take(SAMPLE_MESSAGES, within=BATCH_WITHIN_S):
            await pipeline.handle(batch)

    @app.timer(PRUNE_EVERY_S)  # type: ignore[untyped-decorator]
    async def vitals_prune() -> None:
        await rt.ready()
        await with_retries("pruning raw vitals", pipeline.prune)


_SAMPLES = TypeAdapter(list[TelemetrySample])


def decode_samples(values: list[bytes], refused: list[Refused]) -> list[TelemetrySample]:
    """The samples of messages each holding a JSON array of samples (or one sample), in
    order; one that does not decode is added to ``refused``, its neighbours kept."""
    return decode_packed(TelemetrySample, _SAMPLES, values, refused)
