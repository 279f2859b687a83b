"""``careknot worker``: run the Faust worker for this namespace."""

from __future__ import annotations

import faust

from careknot.settings import Settings
from streams.app import build_app


def run(settings: Settings, *, loglevel: str = "warning") -> int:
    app, _runtime = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()  # returns when the worker is stopped (SIGINT/SIGTERM)
    return 0
