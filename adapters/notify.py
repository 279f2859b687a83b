"""External notification of alarms through Apprise: one library for SMS gateways, e-mail, push
services and chat, each a URL (``mailto://``, ``twilio://``, ``ntfy://``, ``slack://``,
``json://`` for a system of the agency's own...). The URLs are the agency's, per rung of its
escalation ladder (``adapters.storage.alarms``).

Apprise delivers to each URL and says whether all took it; a notification that fails is logged
and counted by the caller, never raised: a ladder goes on to its next rung whatever one
service did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import apprise

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


async def notify(urls: Sequence[str], title: str, body: str, timeout_s: float = TIMEOUT_S) -> bool:
    """Send ``title`` and ``body`` to every URL; whether every one took it."""
    if not urls:
        return True
    sender = apprise.Apprise()
    for url in urls:
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
    return bool(delivered) and len(sender) == len(urls)
