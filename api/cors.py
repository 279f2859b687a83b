"""Cross-origin reads and writes from the web pages: the console (and a family's page) is served
by the gateway, on another origin than the API's, and reads homes, visits and incidents from the
API with its token (``Authorization: Bearer``), which takes a CORS preflight.

The pages allowed are those that may open the gateway's WebSocket: ``gateway_origins`` when it
names any; when it is empty, the gateway's own pages, at its port on ``localhost``,
``127.0.0.1`` and ``gateway_host`` (``https`` when the gateway speaks TLS). A page elsewhere (the
gateway behind a proxy, on a public name) is named in ``gateway_origins``. No cookies are sent
(``allow_credentials`` off): the token is the page's own, in its address's fragment. Every other
origin gets no CORS headers, so its browser keeps the answers from its scripts.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from kernel.settings import Settings

METHODS = ["GET", "PUT", "POST", "DELETE"]
HEADERS = ["Authorization", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key"]
EXPOSED = ["ETag"]
"""What a page's script may read of an answer beside the simple headers: the version to write
against."""
PREFLIGHT_MAX_AGE_S = 600
ANY_HOST = ("", "0.0.0.0", "::")


def page_origins(settings: Settings) -> tuple[list[str], str | None]:
    """The origins allowed by name, and a pattern of those allowed by form (the gateway's own
    pages when ``gateway_origins`` is empty)."""
    named = [o.strip().rstrip("/") for o in settings.gateway_origins.split(",") if o.strip()]
    if named:
        return named, None
    hosts = {"localhost", "127.0.0.1"}
    if settings.gateway_host not in ANY_HOST:
        hosts.add(
            f"[{settings.gateway_host}]" if ":" in settings.gateway_host else settings.gateway_host
        )
    scheme = "https" if settings.gateway_tls_cert else "http"
    either = "|".join(sorted(re.escape(h) for h in hosts))
    return [], rf"{scheme}://({either}):{settings.gateway_port}"


def install(app: FastAPI, settings: Settings) -> None:
    """Answer the pages' preflights, and tell their browsers they may read the answers."""
    origins, pattern = page_origins(settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_origin_regex=pattern,
        allow_methods=METHODS,
        allow_headers=HEADERS,
        expose_headers=EXPOSED,
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
