"""Dispatchers' commands in the event log: each one the HTTP API sent (``command_sent``, what
it asked) and what the dispatch worker decided of it (``command_done``, or ``command_refused``
with the reason), so a client that was answered 202 can read the outcome later.

Each is one row of the append-only ``events`` table keyed by the command's id
(``command:{id}:sent``, ``command:{id}:decided``): a command sent again, or handled again
(Kafka's replay, a retry), is kept once, and the first decision stands. The rows carry no
incident id, so an incident's timeline is what happened to it, not what was asked of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from adapters.storage.incidents import event
from adapters.storage.postgres import Database

DONE = "command_done"
REFUSED = "command_refused"
SENT = "command_sent"

Sent = Literal["sent", "again", "not_the_same"]


@dataclass(frozen=True, slots=True)
class CommandState:
    """A command as the log tells it: what was asked (``asked``: the command and its incident or
    alarm, and the rest the API kept of it), and what became of it (``outcome`` None: not
    decided yet)."""

    command_id: str
    agency_id: str
    asked: dict[str, Any]
    sent_at: float | None
    outcome: Literal["done", "refused"] | None
    reason: str | None
    decided_at: float | None


def _sent_key(command_id: str) -> str:
    return f"command:{command_id}:sent"


def _decided_key(command_id: str) -> str:
    return f"command:{command_id}:decided"


class CommandLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sent(
        self, agency_id: str, command_id: str, actor: str, asked: dict[str, Any], now: float
    ) -> Sent:
        """Keep what the command asks before it is sent: ``sent``; ``again`` when the same
        command was kept before (a retry), ``not_the_same`` when its id was kept asking
        something else (a client's key used twice for two commands). A lock on the id makes two
        sent at once judged one after the other."""
        row = event(_sent_key(command_id), agency_id, None, SENT, actor, now, **asked)
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", row.event_key)
            before = await conn.fetchrow(
                "SELECT agency_id, payload FROM events WHERE event_key = $1", row.event_key
            )
            if before is None:
                await self._db.append_events(conn, [row])
                return "sent"
        same = before["agency_id"] == agency_id and json.loads(before["payload"]) == asked
        return "again" if same else "not_the_same"

    async def decided(
        self,
        agency_id: str,
        command_id: str,
        actor: str,
        subject: dict[str, str],
        outcome: str,
        now: float,
    ) -> None:
        """What the worker decided: ``done``, or the reason it refused; the first one stands."""
        done = outcome == "done"
        more: dict[str, object] = {"command_id": command_id, **subject}
        if not done:
            more["reason"] = outcome
        row = event(
            _decided_key(command_id), agency_id, None, DONE if done else REFUSED, actor, now, **more
        )
        async with self._db.transaction() as conn:
            await self._db.append_events(conn, [row])

    async def state(self, agency_id: str, command_id: str) -> CommandState | None:
        """The command of the agency with this id, as far as the log knows it; None when it
        knows nothing of it (or it is another agency's)."""
        rows = await self._db.pool.fetch(
            "SELECT kind, at, payload FROM events WHERE event_key = ANY($1::text[])"
            " AND agency_id = $2",
            [_sent_key(command_id), _decided_key(command_id)],
            agency_id,
        )
        if not rows:
            return None
        by_kind = {r["kind"]: r for r in rows}
        sent, decided = by_kind.get(SENT), by_kind.get(DONE) or by_kind.get(REFUSED)
        said = {} if decided is None else json.loads(decided["payload"])
        asked = {k: v for k, v in said.items() if k != "reason"}
        return CommandState(
            command_id=command_id,
            agency_id=agency_id,
            asked=asked if sent is None else json.loads(sent["payload"]),
            sent_at=None if sent is None else sent["at"].timestamp(),
            outcome=None if decided is None else ("done" if decided["kind"] == DONE else "refused"),
            reason=said.get("reason"),
            decided_at=None if decided is None else decided["at"].timestamp(),
        )
