"""The gateway says which of its servers is down: against a Redis and a Kafka (tansu) of the
test's own, each stopped and started again on its port, ``/readyz`` and ``/healthz`` answer 503
naming the one that does not answer, and 200 again once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from careknot.servers.embedded import Launcher
from careknot.servers.probes import kafka_answers, redis_answers
from careknot.servers.processes import Child, spawn
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.gateway_clients import http_get
from tests.support import own_gateway
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers

WITHIN_S = 60.0


class OwnServers:
    """A Redis and a tansu of the test's own, each to stop and start again on its port."""

    def __init__(self, workdir: Path) -> None:
        self._launcher = Launcher(workdir, use_installed=True, timeout=WITHIN_S)
        self.redis_url = self._launcher.redis("0").url
        self.bootstrap = self._launcher.kafka(None).url
        self._answers: dict[str, Callable[[], bool]] = {
            "redis": partial(redis_answers, self.redis_url),
            "tansu": partial(kafka_answers, self.bootstrap),
        }

    def stop(self, name: str) -> None:
        self._child(name).stop()

    def start_again(self, name: str) -> None:
        """The same server on the same port (empty: neither keeps data here)."""
        old = self._child(name)
        argv = [str(arg) for arg in old.proc.args]  # type: ignore[union-attr]
        child = spawn(name, argv, old.log_path, stop_signal=old.stop_signal)
        children = self._launcher.children
        children[children.index(old)] = child
        child.wait_ready(self._answers[name], WITHIN_S)

    def close(self) -> None:
        self._launcher.close()

    def _child(self, name: str) -> Child:
        return next(c for c in self._launcher.children if c.name == name)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[OwnServers]:
    servers = OwnServers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
async def gateway(stack_settings: Settings, own: OwnServers) -> AsyncIterator[Gateway]:
    settings = own_gateway(stack_settings, redis_url=own.redis_url, kafka_bootstrap=own.bootstrap)
    async with Gateway(settings) as gw:
        yield gw


async def checks(gateway: Gateway) -> dict[str, tuple[int, dict[str, Any]]]:
    """What ``/readyz`` and ``/healthz`` answer: (status, body) by path."""
    answers = {}
    for path in ("/readyz", "/healthz"):
        status, headers, body = await http_get(gateway, path, admin=True)
        assert headers["content-type"] == "application/json"
        answers[path] = (status, orjson.loads(body))
    return answers


def verdicts(down: list[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """What both paths answer when ``down`` are the servers that do not answer."""
    flags = {"redis": "redis" not in down, "kafka": "kafka" not in down}
    status = 503 if down else 200
    return {
        "/readyz": (status, {"ready": not down, **flags, "down": down}),
        "/healthz": (status, {"ok": not down, **flags, "down": down}),
    }


async def until(gateway: Gateway, down: list[str]) -> None:
    async def answered() -> bool | None:
        return True if await checks(gateway) == verdicts(down) else None

    await poll_until(answered, WITHIN_S, f"the gateway to say {down or 'nothing'} is down")


@pytest.mark.parametrize(("server", "name"), [("redis", "redis"), ("tansu", "kafka")])
async def test_the_gateway_says_which_server_is_down_until_it_is_back(
    gateway: Gateway, own: OwnServers, server: str, name: str
) -> None:
    assert await checks(gateway) == verdicts([])

    await asyncio.to_thread(own.stop, server)
    assert await checks(gateway) == verdicts([name])

    await asyncio.to_thread(own.start_again, server)
    await until(gateway, [])
