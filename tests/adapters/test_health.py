"""A worker's /healthz on its metrics port names the server that does not answer: a fixes
worker's runtime waiting for a Postgres where nothing listens, beside the session's Redis and
Kafka, says so while it waits."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import orjson
import pytest

from kernel.settings import Settings
from streams.runtime import Runtime
from tests.support import free_port, http_get, wait_for

pytestmark = pytest.mark.servers


async def test_a_worker_waiting_for_postgres_says_so_on_healthz(stack_settings: Settings) -> None:
    port = free_port()
    settings = stack_settings.model_copy(
        update={
            "namespace": f"t{secrets.token_hex(4)}",
            "worker_metrics_port": port,
            "postgres_dsn": f"postgresql://127.0.0.1:{free_port()}/test",
        }
    )
    rt = Runtime(settings, dispatching=False)
    waiting = asyncio.create_task(rt.ready())  # waits for Postgres, serving meanwhile

    async def health() -> tuple[int, bytes] | None:
        """Once the worker's Kafka producer started (it starts before Postgres is opened)."""
        with contextlib.suppress(OSError):
            status, body = await http_get(port, "/healthz")
            return (status, body) if orjson.loads(body)["kafka"] else None
        return None

    try:
        status, body = await wait_for(health, 30, "the worker's /healthz")
        assert (status, orjson.loads(body)) == (
            503,
            {
                "ok": False,
                "postgres": False,
                "redis": True,
                "kafka": True,
                "down": ["postgres"],
            },
        )
        assert (await http_get(port, "/metrics"))[0] == 200
        assert not waiting.done()
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await rt.close()


async def test_ingest_says_on_healthz_whether_its_mqtt_connections_stand(
    stack_settings: Settings,
) -> None:
    from ingest.service import IngestService

    port = free_port()
    settings = stack_settings.model_copy(
        update={"namespace": f"t{secrets.token_hex(4)}", "ingest_metrics_port": port}
    )
    async with IngestService(settings) as service:
        status, body = await http_get(port, "/healthz")  # not subscribed yet
        assert (status, orjson.loads(body)["down"]) == (503, ["mqtt"])
        task = asyncio.create_task(service.run("emergencies"))
        try:
            await asyncio.wait_for(service.subscribed.wait(), 30)
            status, body = await http_get(port, "/healthz")
            assert (status, orjson.loads(body)) == (
                200,
                {"ok": True, "mqtt": True, "kafka": True, "postgres": True, "down": []},
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
