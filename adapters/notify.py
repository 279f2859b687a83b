"""External notification of alarms through Apprise: one library for SMS gateways, e-mail, push
services and chat, each a URL (``mailto://``, ``twilio://``, ``ntfy://``, ``slack://``,
``json://`` for a system of the agency's own...). The URLs are the agency's, per rung of its
escalation ladder (``adapters.storage.alarms``), and the system's own
(``CAREKNOT_ALARM_NOTIFY_URL``, told at one rung of every agency's ladders).

Apprise delivers to each URL and says whether all took it; a notification that fails is logged
and counted by the caller, never raised: a ladder goes on to its next rung whatever one
service did.

Apprise URLs may carry credentials (a password, a bot's token, a webhook's key): :func:`shown`
is a URL as a person may read it, with them masked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise
from apprise.utils.parse import parse_urls

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
MASK = "****"
SHOWN_QUERY = frozenset({"to", "cc", "bcc", "from", "method", "format", "priority", "mode", "smtp"})
"""Query parameters whose values are shown; any other's value may be a secret, and is masked."""


def urls_in(text: str | Iterable[str]) -> tuple[str, ...]:
    """The URLs in ``text`` (one or several, separated by commas, semicolons or spaces, as
    Apprise reads them), or in each of several such texts."""
    return tuple(parse_urls(text))  # type: ignore[no-untyped-call]


def known(url: str) -> bool:
    """Whether ``url`` is one URL of a service Apprise knows, well formed."""
    return len(urls_in(url)) == 1 and apprise.Apprise.instantiate(url) is not None


def shown(url: str) -> str:
    """``url`` as a person may read it: its password and the secrets Apprise knows in its
    service's URL (tokens, keys) masked, and the values of its query masked but for a few
    (:data:`SHOWN_QUERY`)."""
    given = urlsplit(url)
    plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        private = urlsplit(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
        netloc, path = private.netloc, private.path
        if not given.path.endswith("/"):
            path = path.rstrip("/")  # as given, not as Apprise writes it
    else:
        netloc = given.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}" if ":" in user else netloc
        path = given.path
    query = [(k, v if k.lower() in SHOWN_QUERY else MASK) for k, v in parse_qsl(given.query)]
    return urlunsplit((given.scheme, netloc, path, urlencode(query, safe="@*+:,"), ""))


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
