"""Home devices' health, kept by the devices worker: each device's heartbeats, births and last
wills judged as they come, and every second the devices whose heartbeats stopped found (silence
is the signal: no message arrives to say so); the alarms each change calls for raised and
cleared through the alarm keeper (source ``device:{id}``: ``device_offline``, ``flapping``,
``low_battery``, ``tamper``), whose ladders the dispatch worker climbs.

The decisions are ``devices.health``'s; the record is ``adapters.storage.device_health``'s. The
worker holds every device's health in memory, read from Postgres when it starts; a device is
watched from its first message on (one never heard is not yet installed, not offline), and a
worker that starts gives each device a whole silence from then, since what the devices sent
meanwhile may still wait in Kafka. Health changes in memory only once its alarm steps are
taken, so a step retried after a failure takes them again (a repeat counts on the standing
alarm, a clearing of none changes nothing). A change Postgres could not take is kept unsaved
and saved with the next save, so Postgres is never left with a health the worker has moved on
from (what a worker started again would read).

One devices worker watches them all (``careknot up`` runs one): a second would watch the same
devices without hearing them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from adapters.storage.device_health import Device, DeviceHealthStore, Watched
from adapters.storage.postgres import Database
from devices.health import (
    AlarmStep,
    HealthPolicy,
    Heard,
    Judged,
    Raise,
    decommissioned,
    first_heard,
    gone,
    heard,
    tick,
)
from devices.health import Health as DeviceHealth
from kernel.contracts import DeviceStatus
from kernel.errors import StorageError
from kernel.settings import Settings
from streams.alarm_keeper import AlarmKeeper

log = logging.getLogger(__name__)


def policy_of(s: Settings) -> HealthPolicy:
    return HealthPolicy(
        missed_beats=s.device_missed_beats,
        battery_minor=s.device_battery_minor_pct,
        battery_major=s.device_battery_major_pct,
        flap_drops=s.device_flap_drops,
        flap_window_s=s.device_flap_window_s,
        settle_s=s.device_settle_s,
    )


def judge(h: DeviceHealth, status: DeviceStatus, p: HealthPolicy) -> Judged:
    """What a device's status message does to its health (its time: when ingest had it)."""
    at = status.received_at
    if status.status == "offline":
        return gone(h, at, p)
    if status.status == "online":
        return heard(h, Heard(at), p)
    beat = Heard(at, True, status.battery, status.tamper, status.interval_s)
    return heard(h, beat, p)


class DeviceKeeper:
    def __init__(
        self, settings: Settings, db: Database, alarms: AlarmKeeper, clock: Callable[[], float]
    ) -> None:
        self._store = DeviceHealthStore(db)
        self._alarms = alarms
        self._clock = clock
        self._policy = policy_of(settings)
        self._watched: dict[str, Watched] | None = None
        self._decommissions_read_s = settings.device_decommissions_read_s
        self._decommissions_read_at = float("-inf")
        self._unsaved: dict[str, Watched] = {}
        """Devices whose health changed since Postgres last took it, as they stand in memory."""
        self.unknown: Counter[str] = Counter()
        """Statuses of devices not registered (or of a kind not known), by device."""
        self.skipped: Counter[str] = Counter()
        """Steps of the tick skipped because Postgres could not answer, by step (each is
        taken again on the next tick)."""

    async def watched(self) -> dict[str, Watched]:
        """Every device watched, read from Postgres the first time."""
        if self._watched is None:
            since = self._clock()
            self._watched = {
                w.device.id: replace(w, health=replace(w.health, watched_since=since))
                for w in await self._store.watched()
            }
            log.info("watching the health of %d devices", len(self._watched))
        return self._watched

    async def on_status(self, statuses: Iterable[DeviceStatus]) -> None:
        """Judge each status in turn, take the alarm steps, save what changed."""
        watched, changed = await self.watched(), {}
        for status in statuses:
            w = watched.get(status.device_id) or await self._first(status)
            if w is None:
                continue
            health, steps = judge(w.health, status, self._policy)
            await self._tell(w.device, steps)
            w = replace(
                w,
                health=health,
                rssi=status.rssi if status.rssi is not None else w.rssi,
                firmware=status.firmware or w.firmware,
            )
            watched[w.device.id] = changed[w.device.id] = w
        await self._save(changed.values())

    async def tick(self) -> None:
        """The passing of time: devices silent too long go offline, flapping ones settle;
        devices decommissioned since are let go."""
        await self._let_go_decommissioned()
        watched, now, changed = await self.watched(), self._clock(), []
        for w in list(watched.values()):
            health, steps = tick(w.health, now, self._policy)
            if health == w.health:
                continue
            await self._tell(w.device, steps)
            watched[w.device.id] = ticked = replace(w, health=health)
            changed.append(ticked)
        await self._save(changed)

    async def _save(self, changed: Iterable[Watched]) -> None:
        """Save what changed, and what an earlier save failed to; when this one fails too,
        it all waits for the next (the health in memory has moved on: nothing would change
        again to save it)."""
        for w in changed:
            self._unsaved[w.device.id] = w
        due = list(self._unsaved.values())
        await self._store.save(due)
        for w in due:  # not one changed again meanwhile, whose save is still to come
            if self._unsaved.get(w.device.id) is w:
                del self._unsaved[w.device.id]

    async def _let_go_decommissioned(self) -> None:
        """Every ``device_decommissions_read_s``: the devices taken out of service are no longer
        watched, and what their health had raised is cleared. With Postgres away (the store's
        :class:`StorageError`), the step is skipped (counted in ``skipped``) and read again on
        the next tick, so the silences are judged meanwhile; any other failure (a query
        Postgres refuses: a bug) is raised, every tick, not taken for an outage. A device is
        let go only once its alarms are cleared, so a clearing that fails is taken again."""
        now = self._clock()
        if now - self._decommissions_read_at < self._decommissions_read_s:
            return
        watched = await self.watched()
        try:
            gone = await self._store.decommissioned(list(watched))
        except StorageError as exc:
            self.skipped["decommissions"] += 1
            log.warning("devices decommissioned not read (%s): read again next tick", exc)
            return
        for device_id in sorted(gone):
            await self._tell(watched[device_id].device, decommissioned())
            del watched[device_id]
            self._unsaved.pop(device_id, None)
            log.info("device %s decommissioned: no longer watched", device_id)
        self._decommissions_read_at = now

    async def _first(self, status: DeviceStatus) -> Watched | None:
        """A device heard for the first time, or None when it is not registered."""
        device = await self._store.device(status.device_id)
        if device is None:
            self.unknown[status.device_id] += 1
            log.warning("status of device %s, not registered: not watched", status.device_id)
            return None
        return Watched(device, first_heard(device.kind, status.received_at))

    async def _tell(self, device: Device, steps: tuple[AlarmStep, ...]) -> None:
        for step in steps:
            if isinstance(step, Raise):
                log.info("device %s: %s (%s)", device.id, step.kind, step.detail)
                await self._alarms.raise_(
                    device.agency_id,
                    device.source,
                    step.kind,
                    step.severity,
                    device.patient_id,
                    step.detail,
                )
            else:
                await self._alarms.clear(device.agency_id, device.source, step.kind)
