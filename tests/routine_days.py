"""A resident as regular as a clock, for tests of the routine watch on real servers: up at
07:00, moving every 10 minutes about her kitchen, lounge, bathroom and hall until 22:00, in bed
at 22:30. Her days are written to a home's history as its devices' events; times are local to
a zone the test picks (:func:`zone_at`), so a test can stand in her afternoon whenever it
runs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from adapters.storage.device_history import DeviceHistory
from adapters.storage.postgres import Database, DeviceRow
from kernel.contracts import DeviceEvent

ROOMS = ("kitchen", "lounge", "bathroom", "lounge", "hall", "kitchen")
KINDS = {
    "pir-kitchen": "motion_sensor",
    "pir-lounge": "motion_sensor",
    "pir-bathroom": "motion_sensor",
    "pir-hall": "motion_sensor",
    "pir-bedroom": "motion_sensor",
    "bed": "bed_sensor",
}


def zone_at(hour: int, now: float) -> str:
    """A fixed-offset zone where it is ``hour`` o'clock (give or take the minutes) at
    ``now``: ``Etc/GMT-3`` is three hours ahead of UTC."""
    utc_hour = datetime.fromtimestamp(now, UTC).hour
    ahead = (hour - utc_hour) % 24
    if ahead > 14:
        ahead -= 24
    return "Etc/GMT" if ahead == 0 else f"Etc/GMT{-ahead:+d}"


def devices(agency: str, patient: str) -> list[DeviceRow]:
    return [DeviceRow(f"{patient}-{d}", agency, patient, k) for d, k in KINDS.items()]


def her_day(
    day: date, zone: ZoneInfo, until: float | None = None, every_s: float = 600.0
) -> list[tuple[float, str, str]]:
    """A day's events (ts, device, type), those before ``until`` when given; she moves every
    ``every_s``."""

    def at(h: int, m: int = 0) -> float:
        return datetime.combine(day, time(h, m), zone).timestamp()

    out = [(at(7), "bed", "bed_out")]
    for k in range(int((22 - 7) * 3600 // every_s)):
        room = ROOMS[k % len(ROOMS)]
        out.append((at(7) + 300.0 + every_s * k, f"pir-{room}", "motion"))
    out.append((at(22, 30), "pir-bedroom", "motion"))
    out.append((at(22, 31), "bed", "bed_in"))
    return [e for e in out if until is None or e[0] < until]


async def write_days(
    db: Database,
    agency: str,
    patient: str,
    zone: str,
    days: int,
    stopped_at: float,
    quiet_days: int = 0,
) -> int:
    """Her last ``days`` days and today's events up to ``stopped_at``, kept in the home's
    history; how many events. On the last ``quiet_days`` before today she moved a third as
    often."""
    tz = ZoneInfo(zone)
    today = datetime.fromtimestamp(stopped_at, tz).date()
    rows: list[tuple[float, str, str]] = []
    for back in range(days, 0, -1):
        every_s = 1800.0 if back <= quiet_days else 600.0
        rows += her_day(today - timedelta(days=back), tz, every_s=every_s)
    rows += her_day(today, tz, until=stopped_at)
    seqs: dict[str, int] = {}
    events = []
    for t, device, kind in rows:
        device_id = f"{patient}-{device}"
        seq = seqs[device_id] = seqs.get(device_id, -1) + 1
        room = device.removeprefix("pir-") if device.startswith("pir-") else "bedroom"
        events.append(
            DeviceEvent(
                event_id=f"{device_id}:{seq}:{t:.0f}",
                agency_id=agency,
                device_id=device_id,
                type=kind,  # type: ignore[arg-type]
                ts=t,
                seq=seq,
                data={"room": room},
                received_at=t,
            )
        )
    return await DeviceHistory(db).keep(events)
