"""The HTTP API in process on given settings, its lifespan entered, and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from api.app import create_app
from kernel.settings import Settings


async def client_of(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
