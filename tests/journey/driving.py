"""A caregiver's phone driving along a line north of a home, as the visit journeys drive it."""

from __future__ import annotations

import time

import aiomqtt
import orjson

from geofence.geodesy import LocalFrame

STEP_M = 20.0
"""Metres a fix, one second apart: 72 km/h."""
PUBLISH_WITHIN_S = 60.0


class Drive:
    """Her phone's fixes on ``topic``, ``metres`` north of ``home``: strictly increasing ``tst``,
    one second apart, sent faster than they were taken. Its clock starts a minute back, so the
    last of a drive's 70-odd fixes is still within ingest's allowance for fixes stamped ahead
    (``max_fix_ahead_s``)."""

    def __init__(self, client: aiomqtt.Client, topic: str, home: tuple[float, float]) -> None:
        self.client, self.topic, self.frame = client, topic, LocalFrame(*home)
        self.tst = int(time.time()) - 60

    async def at(self, metres: float) -> None:
        self.tst += 1
        lon, lat = self.frame.to_lonlat(0.0, metres)
        fix = {"_type": "location", "lat": lat, "lon": lon, "tst": self.tst, "acc": 5}
        await self.client.publish(self.topic, orjson.dumps(fix), qos=1, timeout=PUBLISH_WITHIN_S)

    async def path(self, start_m: float, end_m: float) -> None:
        """From ``start_m`` to ``end_m`` north of the home, a fix every :data:`STEP_M`."""
        step = STEP_M if end_m > start_m else -STEP_M
        metres = start_m
        while (end_m - metres) * step > 0:
            await self.at(metres)
            metres += step
        await self.at(end_m)
