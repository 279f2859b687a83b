"""The benchmarks' phone load: ready packets on a raw connection reach a real broker's
subscribers, one fix per message, each as the phone would have sent it."""

from __future__ import annotations

import asyncio
import secrets
import time

import aiomqtt
import orjson

from kernel.settings import Settings
from simulators.load import AGENCY, Share, fix_payload, fix_tst, publish


async def test_every_fix_arrives_as_its_own_message(stack_settings: Settings) -> None:
    s = stack_settings
    first = 10_000_000 + secrets.randbelow(10**9)  # topics are shared with other runs
    caregivers = [f"bcg-{first + i}" for i in range(3)]
    base_tst = int(time.time()) - 1000
    got: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as sub:
        for cg in caregivers:
            await sub.subscribe(f"ck/{AGENCY}/cg/{cg}/loc", qos=1)
        share = Share(s.mqtt_host, s.mqtt_port, caregivers, 4, 200.0, time.time(), 7, base_tst, [])
        sent = asyncio.ensure_future(asyncio.to_thread(publish, share))
        async with asyncio.timeout(30):
            async for m in sub.messages:
                assert isinstance(m.payload, bytes)
                got.append((m.topic.value, m.payload))
                if len(got) == 12:
                    break
        count, _, _ = await sent
    assert count == 12
    expected = [
        (f"ck/{AGENCY}/cg/{cg}/loc", fix_payload(first + i, 7 + step, base_tst))
        for step in range(4)
        for i, cg in enumerate(caregivers)
    ]
    assert got == expected
    assert orjson.loads(got[0][1])["tst"] == fix_tst(base_tst, 7)
