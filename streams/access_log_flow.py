"""The devices worker's keeping of the access log (``adapters.storage.access_log``): who read
what through the gateway, from the access-log topic, in batches, each record once. A batch
Postgres cannot take now is retried while the server is away (``streams.handling``); nothing
accepted is dropped."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from adapters.storage.access_log import AccessLog
from kernel import keys
from kernel.contracts import AccessRecord
from kernel.settings import Settings
from streams.handling import with_retries
from streams.runtime import Runtime

RECORDS_A_BATCH = 256
BATCH_WITHIN_S = 0.5


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    log = AccessLog(rt.db)

    @app.agent(topic(keys.ACCESS_LOG), name="access-log")
    async def access_log(stream: Any) -> None:
        async for values in stream.take(RECORDS_A_BATCH, within=BATCH_WITHIN_S):
            records = await rt.decode(AccessRecord, values, keys.ACCESS_LOG)
            if not records:
                continue
            await rt.ready()
            park = rt.parker(keys.ACCESS_LOG, values)
            await with_retries(f"{len(records)} access records", partial(log.keep, records), park)
