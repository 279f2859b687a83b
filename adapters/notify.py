"""External notification of alarms through Apprise: one library for SMS gateways, e-mail, push
services and chat, each a URL (``mailto://``, ``twilio://``, ``ntfy://``, ``slack://``,
``json://`` for a system of the agency's own...). The URLs are the agency's, per rung of its
escalation ladder (``adapters.storage.alarms``), and the system's own
(``CAREKNOT_ALARM_NOTIFY_URL``, told at one rung of every agency's ladders).

Apprise delivers to each URL and says whether all took it; a notification that fails is logged
and counted by the caller, never raised: a ladder goes on to its next rung whatever one
service did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import apprise
from apprise.utils.parse import parse_urls

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


def urls_in(text: str | Iterable[str]) -> tuple[str, ...]:
    """The URLs in ``text`` (one or several, separated by commas, semicolons or spaces, as
    Apprise reads them), or in each of several such texts."""
    return tuple(parse_urls(text))  # type: ignore[no-untyped-call]


async def notify(urls: Sequence[str], title: str, body: str, timeout_s: float = TIMEOUT_S) -> bool:
    """Send ``title`` and ``body`` to every URL (an entry may hold several); whether every one
    took it."""
    targets = urls_in(urls)
    if not targets:
        return True
    sender = apprise.Apprise()
    for url in targets:
        if not sender.add(url):
            log.warning("alarm notification: not a URL Apprise knows: %s", url.split(":", 1)[0])
    if not len(sender):
        return False
    try:
        async with asyncio.timeout(timeout_s):
            delivered = await sender.async_notify(body=body, title=title)
    except TimeoutError:
        log.warning("alarm notification: no answer within %.0f s", timeout_s)
        return False
    return bool(delivered) and len(sender) == len(targets)
