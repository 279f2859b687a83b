"""The fixes worker applies the retention settings every ``retention_every_s`` (an hour):
fixes older than ``fix_history_keep_days`` deleted, raw vitals beyond their day
(``adapters.storage.retention``); only while it holds partitions, so a worker standing by
does not run it too. A run that fails (a server away) is logged and the next one tries
again; deleting what is already gone is harmless, so two workers running it at once is too."""

from __future__ import annotations

import logging
import time

import faust

from adapters.storage.retention import apply_retention
from kernel.settings import Settings
from streams.handling import guarded
from streams.runtime import Runtime

log = logging.getLogger(__name__)


def register(app: faust.App, rt: Runtime, s: Settings) -> None:
    async def run() -> None:
        pruned = await apply_retention(rt.db, s, time.time())
        if pruned.fixes or pruned.vitals_raw:
            log.info("retention: %d fixes, %d raw vitals deleted", pruned.fixes, pruned.vitals_raw)

    @app.timer(s.retention_every_s)  # type: ignore[untyped-decorator]
    async def retention() -> None:
        if not app.consumer.assignment():
            return
        await rt.ready()
        await guarded("retention", run)
