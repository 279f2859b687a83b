"""The API's application: ``create_app(settings)`` gives the FastAPI app, whose lifespan opens
Postgres, Redis and a Kafka producer (dispatchers' commands); ``run(settings)`` serves it with
uvicorn until SIGINT or SIGTERM (``careknot api``). Its interactive documents are at ``/docs``,
the OpenAPI one at ``/openapi.json``. The gateway's web pages call it from their own origin
(CORS, :mod:`api.cors`). It refuses to start with the public development key, as
the gateway does. Its counts (``careknot_api_refused_total``: every refusal by status and
reason) and ``/healthz`` (Postgres, Redis, Kafka) are served on ``api_metrics_port``, on
``metrics_host`` (loopback by default), never on the API's own port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from adapters import kafka
from adapters.metrics import ApiMetrics, serve
from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database
from api import (
    agencies,
    alarms,
    caregivers,
    commands,
    cors,
    devices,
    fences,
    incidents,
    medication,
    patients,
    phones,
    problems,
    roster,
    token_renewal,
    tracks,
    visit_records,
    visit_roster,
)
from api.auth import Trust
from kernel import keys, tokens
from kernel.errors import AuthError, StorageError
from kernel.settings import Settings
from kernel.waiting import answers

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    ring = tokens.require_keyring(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = RedisConnection.open(settings.redis_url)
        producer = kafka.Producer(settings)  # dispatchers' commands, as the gateway's
        try:
            async with Database(settings) as db:
                await kafka.ensure_topics(settings, [keys.OFFER_ANSWERS])
                await producer.start()
                app.state.producer = producer
                app.state.db = db
                app.state.redis = redis
                app.state.settings = settings
                app.state.trust = Trust(ring, redis.revocations(settings.keys))

                async def health() -> dict[str, bool]:
                    postgres, cache, brokers = await asyncio.gather(
                        answers(db.ping()), answers(redis.ping()), answers(producer.ping())
                    )
                    return {"postgres": postgres, "redis": cache, "kafka": brokers}

                metrics = await serve(
                    registry, settings.api_metrics_port, settings.metrics_host, health
                )
                try:
                    yield
                finally:
                    if metrics is not None:
                        metrics.close()
        finally:
            await producer.stop()
            await redis.close()

    app = FastAPI(
        title="CareKnot Dispatch API",
        version="1",
        summary="An agency's people, homes, devices and visits; dispatchers' hands.",
        lifespan=lifespan,
    )
    problems.install(app)
    cors.install(app, settings)  # the gateway's pages read and write from their own origin
    registry = CollectorRegistry()
    ApiMetrics(app.state.refused, registry)
    app.state.agencies_known = set()
    app.include_router(agencies.router)
    app.include_router(token_renewal.router)
    under_an_agency = [Depends(agencies.known_agency)]
    for router in (
        caregivers.router,
        patients.router,
        medication.router,
        devices.router,
        phones.router,
        roster.router,
        fences.router,
        visit_roster.router,
        visit_roster.imports,
        incidents.router,
        alarms.router,
        visit_records.router,
        tracks.router,
        commands.router,
    ):
        app.include_router(router, dependencies=under_an_agency)
    return app


def run(settings: Settings) -> int:
    try:
        app = create_app(settings)
    except AuthError as exc:
        log.error("api cannot start: %s", exc)
        return 1
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_level="warning", lifespan="on"
    )
    try:
        uvicorn.Server(config).run()
    except (StorageError, OSError) as exc:
        log.error("api stopped: %s", exc)
        return 1
    return 0
