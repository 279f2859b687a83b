"""Telling the world outside that an incident escalated: a webhook, POSTed JSON.

:class:`Webhook` posts in the background (``notify`` returns at once, so the agent that
escalated never waits on someone else's server): each attempt has a ``timeout_s`` (2 s) and a
failed one is retried after a backoff that doubles, with jitter, ``attempts`` times in all.
The standard library's ``urllib`` runs in a worker thread. ``aclose()`` waits briefly for the
posts still under way, then cancels them.

Set ``CAREKNOT_ESCALATION_WEBHOOK_URL`` to turn it on; unset, nothing is posted.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping

import orjson

from kernel.backoff import Backoff

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
ATTEMPTS = 4
BACKOFF_S = 0.5
CLOSE_WAIT_S = 2.0


class Webhook:
    """Posts escalations to one URL, in the background, with retries."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = TIMEOUT_S,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._tasks: set[asyncio.Task[bool]] = set()

    def notify(self, payload: Mapping[str, object]) -> asyncio.Task[bool]:
        """Start posting ``payload``; the task's result says whether it was delivered."""
        task = asyncio.create_task(self._deliver(orjson.dumps(payload)), name="escalation-webhook")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, body: bytes) -> bool:
        first = 2 * self._backoff_s  # waits drawn in [first / 2, first], doubling
        backoff = Backoff(first, first * 2**self._attempts) if first > 0 else None
        for attempt in range(1, self._attempts + 1):
            try:
                await asyncio.to_thread(self._post, body)
                return True
            except (
                OSError,
                ValueError,
                http.client.HTTPException,
            ) as exc:  # URLError is an OSError
                log.warning("escalation webhook attempt %d failed: %s", attempt, exc)
            if attempt < self._attempts:
                await asyncio.sleep(backoff.next() if backoff else 0)
        log.error("escalation webhook gave up after %d attempts", self._attempts)
        return False

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self._url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "careknot-escalation"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
            response.read()

    async def aclose(self) -> None:
        """Wait up to ``CLOSE_WAIT_S`` for posts under way, then cancel the rest."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
