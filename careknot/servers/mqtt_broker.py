"""``python -m careknot.servers amqtt PORT``: the pure-Python MQTT broker (the amqtt wheel), for
machines without Mosquitto."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from careknot.servers.probes import LOOPBACK


async def _serve_amqtt(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str]) -> int:
    """``python -m careknot.servers amqtt PORT``: run the pure-Python MQTT broker."""
    if len(argv) != 2 or argv[0] != "amqtt" or not argv[1].isdigit():
        print("usage: python -m careknot.servers amqtt PORT", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve_amqtt(int(argv[1])))
    return 0
