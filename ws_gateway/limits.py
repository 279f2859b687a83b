"""What a connection may send, and how fast: pure, with time passed in.

Each connection has a budget per kind of frame (:data:`Lane`): caregivers' answers
(``accept``, ``decline``, and their medication log entries, ``administration``),
dispatchers' commands (``assign``, ``resolve``), and the rest (pings, resumes, and frames that
do not parse). Each is a token bucket: ``burst`` frames at once,
refilled at ``rate`` a second. The budgets are separate, so a flood of one kind never uses up
another's: a client pinging in a loop can still answer her offer, and commands and answers never
draw on one budget. A frame over its budget is not handled (the gateway answers ``error`` with
reason ``rate_limited``).

A client that goes on sending over budget is closed: each frame refused draws on a budget of
strikes, as large as a kind's and refilled as fast, and the frame refused when none is left
closes the connection. A client sending at twice the rate is closed within about
``burst / rate`` seconds; one that slows down when told is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from kernel.errors import RejectedInput

Lane = Literal["answers", "commands", "other"]
LANES: tuple[Lane, ...] = ("answers", "commands", "other")
RATE_LIMITED = "rate_limited"
_LANES: dict[str, Lane] = {
    "accept": "answers",
    "decline": "answers",
    "administration": "answers",
    "assign": "commands",
    "resolve": "commands",
    "acknowledge": "commands",
    "clear": "commands",
    "false_alarm": "commands",
    "open_incident": "commands",
}


def lane_of(frame_type: str | None) -> Lane:
    """The budget a frame of ``frame_type`` draws on (None: a frame that does not parse)."""
    return _LANES.get(frame_type or "", "other")


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Frames a second a connection may send of each kind, and how many at once."""

    rate: float = 5.0
    burst: int = 20


@dataclass(slots=True)
class Bucket:
    """``burst`` tokens at most, refilled at ``rate`` a second."""

    rate: float
    burst: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = max(self.at, now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Verdict(Enum):
    ADMIT = "admit"
    LIMIT = "limit"
    """Over budget: refuse the frame, keep the connection."""
    CLOSE = "close"
    """Over budget again and again: close the connection."""


def _full(limits: FrameLimits, now: float) -> Bucket:
    return Bucket(limits.rate, limits.burst, limits.burst, now)


@dataclass(slots=True)
class FrameBudget:
    """One connection's budgets: one per :data:`Lane`, and its strikes."""

    limits: FrameLimits = field(default_factory=FrameLimits)
    now: float = 0.0
    lanes: dict[Lane, Bucket] = field(init=False)
    strikes: Bucket = field(init=False)

    def __post_init__(self) -> None:
        self.lanes = {lane: _full(self.limits, self.now) for lane in LANES}
        self.strikes = _full(self.limits, self.now)

    def admit(self, lane: Lane, now: float) -> Verdict:
        """Whether a frame of ``lane`` arriving at ``now`` is handled, refused, or closes the
        connection."""
        if self.lanes[lane].take(now):
            return Verdict.ADMIT
        return Verdict.LIMIT if self.strikes.take(now) else Verdict.CLOSE

    def charge(self, frame_type: str | None, now: float) -> None:
        """Draw a frame of ``frame_type`` (None: one that does not parse) on its budget, or
        raise :class:`OverBudget`."""
        lane = lane_of(frame_type)
        verdict = self.admit(lane, now)
        if verdict is not Verdict.ADMIT:
            raise OverBudget(lane, closing=verdict is Verdict.CLOSE)


class OverBudget(RejectedInput):
    """A frame over its kind's budget (``rate_limited``); ``closing`` when the connection is
    to be closed for it."""

    def __init__(self, lane: Lane, *, closing: bool) -> None:
        detail = f"too many {lane} frames: closing" if closing else f"too many {lane} frames"
        super().__init__(RATE_LIMITED, detail)
        self.closing = closing
