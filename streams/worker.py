"""``careknot worker [--role all|dispatch|fixes]``: run a Faust worker for this namespace."""

from __future__ import annotations

import os

import faust

from kernel import heap
from kernel.settings import Settings
from streams.app import WorkerRole, build_app


def run(settings: Settings, *, role: WorkerRole = "all", loglevel: str = "warning") -> int:
    if role in ("fixes", "devices") and settings.flood_nice:
        os.nice(settings.flood_nice)  # the dispatch worker first when the CPU is short
    app, _runtime = build_app(settings, role)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    heap.settle()
    worker.execute_from_commandline()  # returns when the worker is stopped (SIGINT/SIGTERM)
    return 0
