"""One home device's health, judged from what it says and from its silence: online or offline,
battery, tamper, flapping. No I/O and no clock: each step takes the device's :class:`Health`
and the time, and gives its health after, with the alarm steps the change calls for.

- **Heard**: any message (a heartbeat, its birth ``online``) is a sign of life: an offline
  device is back online and its ``device_offline`` alarm clears.
- **Offline**: on its last will (the broker says ``offline`` for it), or when it has missed
  :attr:`HealthPolicy.missed_beats` heartbeats (no message says so: :func:`tick` finds it).
  Its alarm's severity is its kind's (an offline fall detector is critical, a motion sensor
  minor).
- **Flapping**: a device that drops :attr:`HealthPolicy.flap_drops` times within
  :attr:`HealthPolicy.flap_window_s` raises one ``flapping`` alarm instead of another offline
  one, and its drops and returns raise nothing more until it has held one state for
  :attr:`HealthPolicy.settle_s`; then ``flapping`` clears (and, still offline, it is offline).
- **Battery**: under :attr:`HealthPolicy.battery_minor` % a minor ``low_battery``, under
  :attr:`HealthPolicy.battery_major` % major (the standing alarm worsens, never eases); it
  clears at :attr:`HealthPolicy.battery_minor` plus :attr:`HealthPolicy.battery_hysteresis`,
  so a reading hovering at a threshold raises it once.
- **Tamper**: a heartbeat saying ``tamper`` raises ``tamper`` on the device (the same alarm a
  dispenser's ``dispenser_tamper`` event raises), one saying it no longer clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from devices.kinds import DeviceKind, Severity

OFFLINE = "device_offline"
LOW_BATTERY = "low_battery"
FLAPPING = "flapping"
TAMPER = "tamper"


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    missed_beats: int = 3
    """Heartbeats missed in a row before a device is offline."""
    battery_minor: int = 20
    battery_major: int = 10
    battery_hysteresis: int = 5
    """Percent above the minor threshold a battery must be back at to clear its alarm."""
    flap_drops: int = 3
    """Drops within the window that make a device flapping (the earlier ones each raise
    ``device_offline``; this one raises ``flapping`` instead)."""
    flap_window_s: float = 600.0
    settle_s: float = 600.0
    """How long a flapping device must hold one state before it is taken as settled."""
    min_interval_s: float = 1.0
    max_interval_s: float = 3600.0
    """The heartbeat interval a device may announce is bounded to these."""


@dataclass(frozen=True, slots=True)
class Raise:
    kind: str
    severity: Severity
    detail: str


@dataclass(frozen=True, slots=True)
class Clear:
    kind: str


AlarmStep = Raise | Clear


@dataclass(frozen=True, slots=True)
class Heard:
    """A message from the device, received at ``at``: a heartbeat carries what it reports,
    a birth (``online``) nothing."""

    at: float
    heartbeat: bool = False
    battery: int | None = None
    tamper: bool | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class Health:
    kind: DeviceKind
    online: bool
    last_seen: float
    changed_at: float
    """When it last went online or offline (or was first heard)."""
    interval_s: float
    last_heartbeat: float | None = None
    battery: int | None = None
    battery_alarm: Severity | None = None
    """The severity of its standing ``low_battery`` alarm, if one stands."""
    tamper: bool = False
    flapping: bool = False
    drops: tuple[float, ...] = ()
    """When it went offline, within the flap window."""
    watched_since: float = 0.0
    """Silence is counted from here at the earliest (not stored): a worker that starts
    watching a device gives it a whole silence from then, since what it sent meanwhile may
    still be on its way."""


Judged = tuple[Health, tuple[AlarmStep, ...]]


def decommissioned() -> tuple[AlarmStep, ...]:
    """A device taken out of service: whatever its health had raised is cleared."""
    return tuple(Clear(kind) for kind in (OFFLINE, LOW_BATTERY, FLAPPING, TAMPER))


def first_heard(kind: DeviceKind, at: float) -> Health:
    """A device never judged before, taken as online from ``at`` (feed it its message next)."""
    return Health(kind, True, at, at, kind.heartbeat_s)


def heard(h: Health, msg: Heard, p: HealthPolicy) -> Judged:
    """A message from the device: alive (back online if it was not), and what it reports."""
    h = replace(h, last_seen=max(h.last_seen, msg.at))
    if msg.heartbeat:
        beat = msg.at if h.last_heartbeat is None else max(h.last_heartbeat, msg.at)
        h = replace(h, last_heartbeat=beat)
    if msg.interval_s is not None:
        h = replace(h, interval_s=min(max(msg.interval_s, p.min_interval_s), p.max_interval_s))
    steps: list[AlarmStep] = []
    if not h.online:
        h = replace(h, online=True, changed_at=msg.at)
        if not h.flapping:
            steps.append(Clear(OFFLINE))
    if msg.battery is not None:
        h, battery_steps = _battery(h, msg.battery, p)
        steps += battery_steps
    if msg.tamper is not None and msg.tamper != h.tamper:
        h = replace(h, tamper=msg.tamper)
        tampered = Raise(TAMPER, "major", f"the {h.kind.what} was tampered with")
        steps.append(tampered if msg.tamper else Clear(TAMPER))
    return h, tuple(steps)


def gone(h: Health, at: float, p: HealthPolicy) -> Judged:
    """Its last will (or its own ``offline``): offline at ``at``, if it was online."""
    if not h.online:
        return h, ()
    return _offline(h, at, f"the {h.kind.what} went offline (its last will)", p)


def silent_at(h: Health, p: HealthPolicy) -> float:
    """When an online device that says nothing more is taken as offline."""
    return max(h.last_seen, h.watched_since) + h.interval_s * p.missed_beats


def tick(h: Health, now: float, p: HealthPolicy) -> Judged:
    """What the passing of time does: an online device silent too long goes offline; a
    flapping one that held its state long enough settles."""
    steps: tuple[AlarmStep, ...] = ()
    if h.online and now >= silent_at(h, p):
        missed = f"missed {p.missed_beats} heartbeats of {h.interval_s:.0f} s"
        h, steps = _offline(h, now, f"the {h.kind.what} is silent ({missed})", p)
    if h.flapping and now - h.changed_at >= p.settle_s:
        h, settled = _settled(h)
        steps += settled
    return h, steps


def _offline(h: Health, at: float, detail: str, p: HealthPolicy) -> Judged:
    drops = (*(d for d in h.drops if at - d < p.flap_window_s), at)
    h = replace(h, online=False, changed_at=at, drops=drops)
    if h.flapping:
        return h, ()
    if len(drops) >= p.flap_drops:
        h = replace(h, flapping=True)
        window = f"{len(drops)} drops in {p.flap_window_s / 60:.0f} min"
        return h, (Raise(FLAPPING, h.kind.offline, f"the {h.kind.what} is flapping ({window})"),)
    return h, (Raise(OFFLINE, h.kind.offline, detail),)


def _settled(h: Health) -> Judged:
    h = replace(h, flapping=False, drops=())
    if h.online:
        return h, (Clear(FLAPPING),)
    detail = f"the {h.kind.what} stopped flapping and stays offline"
    return h, (Clear(FLAPPING), Raise(OFFLINE, h.kind.offline, detail))


def _battery(h: Health, pct: int, p: HealthPolicy) -> Judged:
    standing = h.battery_alarm
    h = replace(h, battery=pct)
    if pct < p.battery_major and standing != "major":
        detail = f"the {h.kind.what}'s battery is at {pct} %"
        return replace(h, battery_alarm="major"), (Raise(LOW_BATTERY, "major", detail),)
    if pct < p.battery_minor and standing is None:
        detail = f"the {h.kind.what}'s battery is at {pct} %"
        return replace(h, battery_alarm="minor"), (Raise(LOW_BATTERY, "minor", detail),)
    if standing is not None and pct >= p.battery_minor + p.battery_hysteresis:
        return replace(h, battery_alarm=None), (Clear(LOW_BATTERY),)
    return h, ()
