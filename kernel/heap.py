"""The hot services' garbage collector: tuned for a stream of short-lived objects.

Every fix makes a few dozen objects that reference counting frees at once; the cyclic collector
still runs every 700 allocations by default, and now and then scans the whole heap (the
worker's trackers, fences and caches, Faust's and the libraries' own objects), a cost that grows
with the heap rather than with the work. :func:`settle` freezes what
start-up made (the collector never scans it again) and lets the young generation grow to
:data:`YOUNG_OBJECTS` before a collection: cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 10_000


def settle() -> None:
    """Call once a service has started, before its loop runs."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, older, oldest)
